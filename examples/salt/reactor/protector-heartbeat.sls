{#- The heartbeat (see master.d/protector-heartbeat.conf): every minion touches its heartbeat
    file. Published without waiting for returns, and quiet=True makes the minions send none. #}
protector-beat:
  local.protector.beat:
    - tgt: '*'
    - kwarg:
        quiet: True
