"""DuckDB storage: schema and migrations, serialised writes, typed reads, the SQL guard."""
