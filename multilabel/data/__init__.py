"""CSV files to training rows: reading (`csv_files`), the column and label checks
(`schema`, standard library only), and `datasets.Dataset`s with their split (`dataset`).
"""
