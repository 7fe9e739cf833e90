"""A user's own config folder, outside cvrun's configs/: given as --config-dir, hydra.searchpath=[file://...] or
hydra.searchpath=[pkg://tests.user_configs] by tests/test_config_dirs.py and the catalogue of user mistakes."""
