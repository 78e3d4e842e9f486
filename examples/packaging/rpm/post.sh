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
# A refused config is said loudly: protector (restarted by the upgrade) keeps watching with the
# last config it accepted.
CONFIG=/etc/protector/protector.yaml
# check: 1 = the file is refused; 3 = accepted, but some command's program is missing here.
if [ -f "$CONFIG" ]; then
    status=0
    /usr/bin/protector check -q --config "$CONFIG" >/dev/null 2>&1 || status=$?
    if [ "$status" = 3 ]; then
        echo "protector: WARNING: some commands of $CONFIG cannot run here:" >&2
        /usr/bin/protector check -q --config "$CONFIG" 2>&1 | sed 's/^/protector:   /' >&2 || :
    elif [ "$status" != 0 ]; then
        echo "protector: WARNING: $CONFIG is refused:" >&2
        /usr/bin/protector check -q --config "$CONFIG" 2>&1 | sed 's/^/protector:   /' >&2 || :
        echo "protector: WARNING: protector keeps watching with the last config it accepted; fix the file, then systemctl reload protector" >&2
    fi
fi
