{#- Puts protector on a minion and keeps it running: the right binary for the minion's OS,
    protector.yaml rendered from pillar, and the service (systemd unit on Linux, Windows
    service on Windows), reloaded when the config changes. Pillar: see srv/pillar/protector.sls. #}
{%- set p = salt['pillar.get']('protector', {}) %}
{%- set windows = grains['kernel'] == 'Windows' %}
{%- if windows %}
{%-   set bin = p.get('bin', 'C:\\ProgramData\\protector\\protector.exe') %}
{%-   set config = p.get('config', 'C:\\ProgramData\\protector\\protector.yaml') %}
{%- else %}
{%-   set bin = p.get('bin', '/usr/local/bin/protector') %}
{%-   set config = p.get('config', '/etc/protector/protector.yaml') %}
{%- endif %}
{#- systemd or windows (the default for the OS), or none to only install the files. #}
{%- set manager = p.get('service_manager', 'windows' if windows else 'systemd') %}

protector-binary:
  file.managed:
    - name: {{ bin }}
    - source: salt://protector/files/{{ 'protector.exe' if windows else 'protector' }}
    - makedirs: True
{%- if not windows %}
    - mode: '0755'
{%- endif %}

protector-config:
  file.managed:
    - name: {{ config }}
    - source: salt://protector/protector.yaml.j2
    - template: jinja
    - makedirs: True
    - check_cmd: '"{{ bin }}" check --config'
    - require:
      - file: protector-binary

{%- if manager == 'systemd' %}

protector-unit:
  file.managed:
    - name: /etc/systemd/system/protector.service
    - source: salt://protector/protector.service.j2
    - template: jinja
    - context:
        bin: {{ bin }}
        config: {{ config }}

protector-daemon-reload:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: protector-unit

protector-service:
  service.running:
    - name: protector
    - enable: True
    - require:
      - cmd: protector-daemon-reload
      - file: protector-config
    - watch:
      - file: protector-binary

# A changed config is reloaded (SIGHUP), keeping every unchanged target's state; protector
# keeps its old config if the new one is invalid.
protector-reload:
  cmd.run:
    - name: systemctl reload protector
    - onchanges:
      - file: protector-config
    - require:
      - service: protector-service

{%- elif manager == 'windows' %}

protector-service-installed:
  cmd.run:
    - name: '"{{ bin }}" service install --config "{{ config }}"'
    - unless: 'sc query protector'
    - require:
      - file: protector-config

protector-service:
  service.running:
    - name: protector
    - enable: True
    - require:
      - cmd: protector-service-installed
    - watch:
      - file: protector-config
      - file: protector-binary
{%- endif %}
