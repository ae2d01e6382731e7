"""What the server writes for people: per-run report files, Altair charts and result exports."""
