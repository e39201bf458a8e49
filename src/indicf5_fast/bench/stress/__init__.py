"""``indicf5-fast stress``: load tester for a running server (ours or Triton), soak and fuzz."""
