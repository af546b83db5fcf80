//! Unit tests of the template renderer (the pongo2 subset images use).

use super::*;

fn config() -> BTreeMap<String, String> {
    [
        ("user.meta-data", "foo: bar\n"),
        ("user.network-config", "version: 1\n"),
        ("limits.cpu", "2"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Renders with an instance `c1`, the config above and `config_get` over it.
fn r(src: &str) -> Result<String, TemplateError> {
    let cfg = config();
    let get = |args: &[Value]| -> Value {
        let key = args.first().map(|v| v.to_text()).unwrap_or_default();
        match cfg.get(&key) {
            Some(v) => Value::Str(v.trim_end_matches(['\r', '\n']).to_string()),
            None => args.get(1).cloned().unwrap_or(Value::Null),
        }
    };
    let mut ctx = Context::default();
    let inst: BTreeMap<String, Value> = [("name", "c1"), ("type", "container")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::from(v)))
        .collect();
    ctx.vars.insert("instance".into(), Value::Map(inst.clone()));
    ctx.vars.insert("container".into(), Value::Map(inst));
    ctx.vars.insert("config".into(), Value::from(cfg.clone()));
    let props: BTreeMap<String, String> =
        [("default".to_string(), "#cloud-config\n{}".to_string())].into();
    ctx.vars.insert("properties".into(), Value::from(props));
    let nics = vec![
        Value::from(BTreeMap::from([("name".to_string(), "eth0")])),
        Value::from(BTreeMap::from([("name".to_string(), "if-x")])),
    ];
    ctx.vars.insert("nics".into(), Value::List(nics));
    ctx.functions.insert("config_get".into(), &get);
    render(src, &ctx)
}

#[test]
fn variables_and_config_get() {
    assert_eq!(r("{{ instance.name }}\n").unwrap(), "c1\n");
    assert_eq!(r("{{container.name}}").unwrap(), "c1");
    assert_eq!(
        r("instance-id: {{ instance.name }}\n{{ config_get(\"user.meta-data\", \"\") }}\n")
            .unwrap(),
        "instance-id: c1\nfoo: bar\n"
    );
    assert_eq!(
        r("{{ config_get(\"user.user-data\", properties.default) }}\n").unwrap(),
        "#cloud-config\n{}\n"
    );
    assert_eq!(r("{{ config['limits.cpu'] }}").unwrap(), "2");
    assert_eq!(r("[{{ nothing.here }}]").unwrap(), "[]");
    assert_eq!(r("{{ nothing|default:\"x\" }}").unwrap(), "x");
    assert_eq!(r("{{ instance.name|upper }}").unwrap(), "C1");
    assert_eq!(r("{# a comment #}a").unwrap(), "a");
    assert_eq!(r("no tags at all\n").unwrap(), "no tags at all\n");
}

#[test]
fn conditions() {
    let t = "{% if config_get(\"user.network-config\", \"\") == \"\" %}default{% else %}{{ config_get(\"user.network-config\", \"\") }}{% endif %}";
    assert_eq!(r(t).unwrap(), "version: 1");
    let t = "{% if config_get(\"user.nope\", \"\") == \"\" %}default{% else %}x{% endif %}";
    assert_eq!(r(t).unwrap(), "default");
    let t = "{% if instance.type == \"virtual-machine\" %}enp5s0{% elif instance.type == \"container\" %}eth0{% else %}?{% endif %}";
    assert_eq!(r(t).unwrap(), "eth0");
    assert_eq!(
        r("{% if not nothing and instance.name != 'c2' %}y{% endif %}").unwrap(),
        "y"
    );
    assert_eq!(
        r("{% if nothing or (instance.name == 'c1') %}y{% endif %}").unwrap(),
        "y"
    );
    assert_eq!(r("{% if 'c' in instance.name %}y{% endif %}").unwrap(), "y");
    assert_eq!(
        r("{% if 'z' not in instance.name %}y{% endif %}").unwrap(),
        "y"
    );
    assert_eq!(r("{% if nics %}some{% endif %}").unwrap(), "some");
}

#[test]
fn loops() {
    assert_eq!(
        r("{% for n in nics %}{% if forloop.first %}{{ n.name }}{% endif %}{% endfor %}").unwrap(),
        "eth0"
    );
    assert_eq!(
        r("{% for n in nics %}{{ forloop.Counter }}={{ n.name }};{% endfor %}").unwrap(),
        "1=eth0;2=if-x;"
    );
    assert_eq!(
        r("{% for k, v in instance %}{{ k }}={{ v }} {% endfor %}").unwrap(),
        "name=c1 type=container "
    );
    assert_eq!(
        r("{% for x in nothing %}x{% empty %}none{% endfor %}").unwrap(),
        "none"
    );
}

#[test]
fn whitespace_trimming_and_autoescape() {
    assert_eq!(r("a  {%- if true -%}  b  {%- endif -%}  c").unwrap(), "abc");
    assert_eq!(
        r("{% autoescape off %}<{{ instance.name }}>{% endautoescape %}").unwrap(),
        "<c1>"
    );
}

#[test]
fn errors_name_the_line() {
    let e = r("line1\n{% if x %}open").unwrap_err();
    assert!(matches!(e, TemplateError::Syntax { line: 2, .. }), "{e}");
    let e = r("a\nb\n{{ unclosed").unwrap_err();
    assert!(matches!(e, TemplateError::Syntax { line: 3, .. }), "{e}");
    assert!(r("{% frobnicate %}").is_err());
    assert!(r("{% endif %}").is_err());
    assert!(r("{{ 'unterminated }}").is_err());
    assert!(r("{{ a == }}").is_err());
    assert!(matches!(
        r("{{ nope(1) }}").unwrap_err(),
        TemplateError::Eval(_)
    ));
    assert!(r("{{ x|nosuchfilter }}").is_err());
}

/// The templates `kante image build` puts in the Debian image, end to end.
#[test]
fn public_image_style_templates() {
    let hosts = "127.0.1.1\t{{ instance.name }}\n";
    assert_eq!(r(hosts).unwrap(), "127.0.1.1\tc1\n");
    let net = "{% if config_get(\"user.network-config\", \"\") == \"\" %}version: 1\nconfig:\n\
               {%- for n in nics %}{% if forloop.first %}\n  - type: physical\n    name: {{ n.name }}\n\
               {%- endif %}{% endfor %}\n{% else %}{{ config_get(\"user.network-config\", \"\") }}\n{% endif %}";
    assert_eq!(r(net).unwrap(), "version: 1\n");
}
