"""Licenses: what each license string means and allows (`terms`), and the license stage
that decides every record by it (`stage`)."""
