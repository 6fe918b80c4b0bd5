{#- A case setting, passed by the asset as a dbt var on every build (lakehouse/<case>/settings.py
    is their only source). At parse time any value will do: nothing is executed then. -#}
{% macro setting(name) -%}
    {{ return(var(name) if execute else 1) }}
{%- endmacro %}

{#- A list setting as a SQL list literal of quoted strings: ['basic', 'pro']. -#}
{% macro setting_list(name) -%}
    [{%- for value in (var(name) if execute else []) -%}'{{ value | replace("'", "''") }}'{{ ", " if not loop.last }}{%- endfor -%}]
{%- endmacro %}
