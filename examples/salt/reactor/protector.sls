{#- An example reaction to protector's events: put this file at reactor/protector.sls on
    the master's file server. It logs every event on the master and, when protector gives
    up on a minion, runs a highstate on it (change to what your site does: a ticket, a
    page, a chat message). `data` is the event: data['id'] is the minion, data['data'] what
    protector sent (target, age_secs, restarts). #}
{%- set event = tag.split('/')[1] %}
protector-{{ event }}-{{ data['id'] }}:
  runner.salt.cmd:
    - args:
      - fun: log.warning
      - message: {{ ('protector on ' ~ data['id'] ~ ': ' ~ event ~ ' of ' ~ data['data']['target'] ~ ' (heartbeat ' ~ data['data']['age_secs'] ~ ' s old, ' ~ data['data']['restarts'] ~ ' restarts)') | yaml_dquote }}
{%- if event == 'give-up' %}

protector-highstate-{{ data['id'] }}:
  local.state.apply:
    - tgt: {{ data['id'] | yaml_dquote }}
{%- endif %}
