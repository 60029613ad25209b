// Diagram helpers: models without diagram information (written by hand or by other tools) get
// an automatic layout so they can be shown and edited.
import { layoutProcess } from 'bpmn-auto-layout'
import { BpmnModdle } from 'bpmn-moddle'
import zeebeModdle from 'zeebe-bpmn-moddle/resources/zeebe.json'

export function hasDiagram(xml: string): boolean {
  return /BPMNDiagram/.test(xml)
}

/**
 * Adds the `incoming`/`outgoing` references that hand-written models often leave out (the
 * auto-layout follows them), keeping every zeebe extension.
 */
async function withFlowRefs(xml: string): Promise<string> {
  const moddle = new BpmnModdle({ zeebe: zeebeModdle })
  const { rootElement } = await moddle.fromXML(xml)
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const visit = (container: any) => {
    for (const el of container.flowElements ?? []) {
      if (el.$type === 'bpmn:SequenceFlow') {
        const out = el.sourceRef.get('outgoing')
        if (!out.includes(el)) out.push(el)
        const inc = el.targetRef.get('incoming')
        if (!inc.includes(el)) inc.push(el)
      } else if (el.flowElements) {
        visit(el)
      }
    }
  }
  for (const e of rootElement.rootElements ?? []) if (e.$type === 'bpmn:Process') visit(e)
  const { xml: out } = await moddle.toXML(rootElement, { format: true })
  return out
}

export async function withDiagram(xml: string): Promise<string> {
  if (hasDiagram(xml)) return xml
  try {
    return await layoutProcess(await withFlowRefs(xml))
  } catch {
    return xml
  }
}

/** A new, empty process for the designer. */
export function newProcessXml(key: string, name: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:bpmndi="http://www.omg.org/spec/BPMN/20100524/DI" xmlns:dc="http://www.omg.org/spec/DD/20100524/DC" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" xmlns:modeler="http://camunda.org/schema/modeler/1.0" id="Definitions_${key}" targetNamespace="http://bpmn.io/schema/bpmn" modeler:executionPlatform="Camunda Cloud" modeler:executionPlatformVersion="8.6.0">
  <bpmn:process id="${key}" name="${name}" isExecutable="true">
    <bpmn:startEvent id="StartEvent_1" name="开始" />
  </bpmn:process>
  <bpmndi:BPMNDiagram id="BPMNDiagram_1">
    <bpmndi:BPMNPlane id="BPMNPlane_1" bpmnElement="${key}">
      <bpmndi:BPMNShape id="StartEvent_1_di" bpmnElement="StartEvent_1">
        <dc:Bounds x="152" y="102" width="36" height="36" />
      </bpmndi:BPMNShape>
    </bpmndi:BPMNPlane>
  </bpmndi:BPMNDiagram>
</bpmn:definitions>`
}
