"""The lab: real Debian hosts (systemd-nspawn, btrfs, a local apt repository) on one machine."""
