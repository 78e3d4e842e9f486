# protector .rpm: after removal ($1 = 0) or after an upgrade ($1 = 1): the new binary runs.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart protector.service >/dev/null 2>&1 || :
    fi
fi
