"""Lightning callbacks: pictures of test predictions (and their W&B table)."""
