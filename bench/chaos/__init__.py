"""`make chaos`: Redis, three gateway nodes and about 30 clients under a nemesis that
injects random faults, and a checker that reads the whole history afterwards."""
