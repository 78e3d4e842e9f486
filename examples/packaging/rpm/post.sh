# protector .rpm: after install ($1 = 1) or upgrade ($1 = 2). Enabled on install, as the .deb
# is; the packaged config watches nothing until it is edited.
if [ "$1" -eq 1 ]; then
    systemctl enable protector.service >/dev/null 2>&1 || :
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -eq 1 ]; then
        systemctl start protector.service >/dev/null 2>&1 || :
    fi
fi
