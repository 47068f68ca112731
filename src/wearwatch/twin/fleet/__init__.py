"""The machine fleet twin: machines from a config file that degrade, fail and are repaired."""
