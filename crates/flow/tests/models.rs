//! Parsing and validation: bad models are refused with the line and element named.

fn wrap(body: &str) -> String {
    format!(
        r#"<?xml version="1.0"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d">
<bpmn:process id="p" isExecutable="true">
{body}
</bpmn:process>
</bpmn:definitions>"#
    )
}

fn errors(xml: &str) -> Vec<flow::ModelError> {
    flow::compile(xml).expect_err("should be refused")
}

fn has(errs: &[flow::ModelError], element: &str, text: &str) -> bool {
    errs.iter().any(|e| e.element.as_deref() == Some(element) && e.message.contains(text))
}

#[test]
fn every_conformance_model_compiles() {
    let dir = format!("{}/conformance", env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let xml = std::fs::read_to_string(&path).unwrap();
        flow::compile(&xml).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        n += 1;
    }
    assert!(n >= 8);
}

#[test]
fn unreachable_nodes_and_dead_end_gateways_are_named() {
    let xml = wrap(
        r#"<bpmn:startEvent id="s"/><bpmn:exclusiveGateway id="g"/><bpmn:task id="island"/><bpmn:endEvent id="e"/>
        <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="g"/><bpmn:sequenceFlow id="f2" sourceRef="island" targetRef="e"/>"#,
    );
    let errs = errors(&xml);
    assert!(has(&errs, "island", "cannot be reached"), "{errs:?}");
    assert!(has(&errs, "g", "no outgoing flow"), "{errs:?}");
    let g = errs.iter().find(|e| e.element.as_deref() == Some("g")).unwrap();
    assert_eq!(g.line, 4);
}

#[test]
fn gateway_flows_without_conditions_are_named() {
    let xml = wrap(
        r#"<bpmn:startEvent id="s"/><bpmn:exclusiveGateway id="g"/><bpmn:endEvent id="a"/><bpmn:endEvent id="b"/>
        <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="g"/>
        <bpmn:sequenceFlow id="fa" sourceRef="g" targetRef="a"><bpmn:conditionExpression>=x &gt; 1</bpmn:conditionExpression></bpmn:sequenceFlow>
        <bpmn:sequenceFlow id="fb" sourceRef="g" targetRef="b"/>"#,
    );
    assert!(has(&errors(&xml), "fb", "no condition"));
}

#[test]
fn unsupported_elements_are_refused_by_name() {
    let xml = wrap(
        r#"<bpmn:startEvent id="s"/><bpmn:complexGateway id="cx"/><bpmn:sequenceFlow id="f" sourceRef="s" targetRef="cx"/>"#,
    );
    assert!(has(&errors(&xml), "cx", "<complexGateway> is not supported"));
    let xml = wrap(r#"<bpmn:startEvent id="s"><bpmn:conditionalEventDefinition/></bpmn:startEvent>"#);
    assert!(has(&errors(&xml), "s", "conditionalEventDefinition"));
    let xml =
        wrap(r#"<bpmn:scriptTask id="js" scriptFormat="javascript"><bpmn:script>rm()</bpmn:script></bpmn:scriptTask>"#);
    assert!(has(&errors(&xml), "js", "javascript"));
    let xml = wrap(r#"<bpmn:serviceTask id="st"/>"#);
    assert!(has(&errors(&xml), "st", "no handler"));
    let xml = wrap(
        r#"<bpmn:startEvent id="s"><bpmn:extensionElements><zeebe:executionListeners><zeebe:executionListener eventType="start" type="x"/></zeebe:executionListeners></bpmn:extensionElements></bpmn:startEvent>"#,
    );
    assert!(has(&errors(&xml), "s", "executionListeners are not supported"));
}

#[test]
fn bad_expressions_are_refused_at_deploy_time() {
    let xml = wrap(
        r#"<bpmn:startEvent id="s"/><bpmn:endEvent id="e"/>
        <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="e"><bpmn:conditionExpression>=a &gt;&gt; 1</bpmn:conditionExpression></bpmn:sequenceFlow>"#,
    );
    assert!(has(&errors(&xml), "f1", "does not parse"));
}

#[test]
fn hostile_xml_is_refused_cleanly() {
    // Entity expansion ("billion laughs"): no DTD allowed at all.
    let bomb = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL">&lol2;</bpmn:definitions>"#;
    assert!(errors(bomb)[0].message.contains("DOCTYPE"));
    // External entity.
    let xxe = r#"<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><d>&x;</d>"#;
    assert!(errors(xxe)[0].message.contains("DOCTYPE"));
    // Deep nesting.
    let deep = format!("{}{}", "<a>".repeat(20_000), "</a>".repeat(20_000));
    let errs = errors(&wrap(&deep));
    assert!(errs[0].message.contains("nested") || errs[0].message.contains("well-formed"), "{errs:?}");
    // Huge.
    let huge = wrap(&format!("<!-- {} -->", "x".repeat(5 * 1024 * 1024)));
    assert!(errors(&huge)[0].message.contains("bytes"));
    // Not XML, not BPMN, broken XML with a line number.
    assert!(errors("hello")[0].message.contains("well-formed"));
    assert!(errors("<html/>")[0].message.contains("definitions"));
    let broken = wrap("<bpmn:startEvent id=\"s\">\n<oops>");
    assert!(errors(&broken)[0].line >= 5);
    // Duplicate ids.
    let dup = wrap(r#"<bpmn:startEvent id="s"/><bpmn:endEvent id="s"/>"#);
    assert!(has(&errors(&dup), "s", "used twice"));
}
