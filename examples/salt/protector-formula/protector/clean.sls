{#- protector.clean: uninstalls protector: stops and removes the service, the binary (or
    the package) and the config. The state and metrics files stay unless pillar `protector:clean_state` is
    true. Remove the master's heartbeat schedule too, or protector.beat keeps touching. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import protector with context %}

{%- if protector.service_manager == 'systemd' %}

protector-clean-service:
  service.dead:
    - name: protector
    - enable: False

protector-clean-unit:
  file.absent:
    - names:
      - /etc/systemd/system/protector.service
      - /etc/systemd/system/protector.service.d
    - require:
      - service: protector-clean-service

protector-clean-daemon-reload:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
      - file: protector-clean-unit

{%- elif protector.service_manager == 'windows' %}

protector-clean-service:
  service.dead:
    - name: protector
    - enable: False
    - onlyif: sc query protector

protector-clean-unregister:
  cmd.run:
    - name: {{ ('"' ~ protector.bin ~ '" service uninstall') | yaml_dquote }}
    - onlyif: sc query protector
    - require:
      - service: protector-clean-service
    - require_in:
      - file: protector-clean-files
{%- endif %}

{%- if protector.install == 'package' %}

# The package's own scripts stop and disable the service; its files go with it.
protector-clean-package:
  pkg.removed:
    - name: {{ protector.package | yaml_dquote }}
    - require:
      - service: protector-clean-service
    - require_in:
      - file: protector-clean-files
{%- endif %}

protector-clean-files:
  file.absent:
    - names:
{%- if protector.install != 'package' %}
      - {{ protector.bin | yaml_dquote }}
{%- endif %}
      - {{ protector.config_file | yaml_dquote }}
{%- if protector.clean_state %}
{%-   for key in ['state_file', 'metrics_file'] %}
{%-     if protector.config.get(key) %}
      - {{ protector.config[key] | yaml_dquote }}
{%-     endif %}
{%-   endfor %}
{%- endif %}
{%- if protector.service_manager == 'systemd' %}
    - require:
      - service: protector-clean-service
{%- endif %}
