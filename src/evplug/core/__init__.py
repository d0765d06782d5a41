"""The rules of the business, pure: no I/O, no clock reads, no globals. Time is an argument."""
