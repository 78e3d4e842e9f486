{#- protector: puts protector on a minion and keeps it running. The binary for the minion's
    OS (the static binary from Salt's file server, or the .deb/.rpm from the site's
    repository: pillar `protector:install`), protector.yaml rendered from pillar and checked
    by `protector check` before it replaces the old one, the module behind `protector.beat`
    synced, and the service (systemd unit on Linux, Windows service on Windows) enabled,
    reloaded when the config changes. Settings: map.jinja (defaults.yaml, kernelmap.yaml,
    installmap.yaml, pillar `protector`). #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import protector with context %}
{%- set windows = grains['kernel'] == 'Windows' %}
{#- The state that puts the binary there: pkg.installed, file.managed, or a refusal. #}
{%- set binary_state = 'file' if protector.install == 'binary' else
      'pkg' if protector.install == 'package' and not windows else 'test' %}

# The master's heartbeat schedule calls protector.beat: have it before protector watches.
protector-module:
  saltutil.sync_modules:
    - refresh: True

{%- if protector.install == 'package' %}
{%-   if windows %}

protector-binary:
  test.fail_without_changes:
    - name: "protector: install: package is for Linux (.deb/.rpm); use install: binary on Windows"
{%-   else %}

# The .deb/.rpm from the site's repository: binary, unit (enabled) and a default config, which
# protector-config below replaces.
protector-binary:
  pkg.installed:
    - name: {{ protector.package | yaml_dquote }}
{%-     if protector.package_version %}
    - version: {{ protector.package_version | string | yaml_dquote }}
{%-     endif %}
{%-   endif %}
{%- elif protector.install == 'binary' %}

protector-binary:
  file.managed:
    - name: {{ protector.bin | yaml_dquote }}
    - source: {{ protector.source | yaml_dquote }}
    - makedirs: True
{%-   if not windows %}
    - mode: '0755'
{%-   endif %}
{%- else %}

protector-binary:
  test.fail_without_changes:
    - name: {{ ("protector: install must be binary or package, not " ~ protector.install) | yaml_dquote }}
{%- endif %}

protector-config:
  file.managed:
    - name: {{ protector.config_file | yaml_dquote }}
    - source: salt://{{ tplroot }}/files/protector.yaml.j2
    - template: jinja
    - makedirs: True
{%- if not windows %}
    - mode: '0600'
{%- endif %}
    - check_cmd: {{ ('"' ~ protector.bin ~ '" check --config') | yaml_dquote }}
    - require:
      - {{ binary_state }}: protector-binary

{%- if protector.service_manager == 'systemd' %}
{%-   if protector.install != 'package' %}

protector-unit:
  file.managed:
    - name: /etc/systemd/system/protector.service
    - source: {{ protector.unit_source | yaml_dquote }}
{%-   endif %}

# The unit as shipped, with this minion's binary and config paths.
protector-unit-paths:
  file.managed:
    - name: /etc/systemd/system/protector.service.d/salt.conf
    - makedirs: True
    - contents: |
        # Managed by Salt (protector formula).
        [Service]
        ExecStartPre=
        ExecStart=
        ExecStart={{ protector.bin }} --config {{ protector.config_file }}
        ExecReload=
        ExecReload={{ protector.bin }} reload --config {{ protector.config_file }}

protector-daemon-reload:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
{%- if protector.install != 'package' %}
      - file: protector-unit
{%- endif %}
      - file: protector-unit-paths

protector-service:
  service.running:
    - name: protector
    - enable: True
    - require:
      - saltutil: protector-module
      - cmd: protector-daemon-reload
      - file: protector-config
    - watch:
      - {{ binary_state }}: protector-binary
{%- if protector.install != 'package' %}
      - file: protector-unit
{%- endif %}
      - file: protector-unit-paths

# A changed config is reloaded (the unit's ExecReload asks protector and waits for its
# verdict): every unchanged target keeps its state, and an invalid config makes this state
# fail, with the old config still running.
protector-reload:
  cmd.run:
    - name: systemctl reload protector
    - onchanges:
      - file: protector-config
    - require:
      - service: protector-service

{%- elif protector.service_manager == 'windows' %}

protector-service-installed:
  cmd.run:
    - name: {{ ('"' ~ protector.bin ~ '" service install --config "' ~ protector.config_file ~ '"') | yaml_dquote }}
    - unless: sc query protector
    - require:
      - file: protector-config

# A changed binary restarts the service (the state file keeps every target's counts and
# backoff across it).
protector-service:
  service.running:
    - name: protector
    - enable: True
    - require:
      - saltutil: protector-module
      - cmd: protector-service-installed
    - watch:
      - {{ binary_state }}: protector-binary

# Windows has no SIGHUP: a changed config is reloaded over protector's control pipe (every
# unchanged target keeps its state; the state fails, saying why, if protector refuses it).
# Tried again for a few seconds: a service the SCM has just started may not have opened its
# pipe yet.
protector-reload:
  cmd.run:
    - name: {{ ('"' ~ protector.bin ~ '" reload --config "' ~ protector.config_file ~ '"') | yaml_dquote }}
    - onchanges:
      - file: protector-config
    - require:
      - service: protector-service
    - retry:
        attempts: 5
        interval: 2
{%- endif %}
