# Per-minion values for the protector state; everything is optional. Defaults: Linux minions
# use systemctl and /var/run/protector/salt-minion.alive, Windows minions net stop/net start
# and %TEMP%\htrd_minion_alived, with a 5 minute timeout.
protector:
  timeout: 5m                 # at least 3 heartbeat periods (see master.d/protector-heartbeat.conf)
  restart_grace: 2m
  backoff: {after: 3, max: 1h}
  state_file: /var/lib/protector/state.json
  metrics_file: /var/lib/protector/protector.prom
  # heartbeat: /var/run/protector/salt-minion.alive
  # stop: systemctl stop salt-minion
  # start: systemctl start salt-minion
  # skip_if: pgrep -f state.apply
  # service_manager: systemd   # or windows, or none (only install the binary and config)
