# protector .rpm: before removal ($1 = 0) or before an upgrade's old files go ($1 = 1).
if [ "$1" -eq 0 ]; then
    systemctl --no-reload disable protector.service >/dev/null 2>&1 || :
    if [ -d /run/systemd/system ]; then
        systemctl stop protector.service >/dev/null 2>&1 || :
    fi
fi
