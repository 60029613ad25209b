// The reference process on bpmn-engine (npm), in memory, one thread. Same model as
// crates/flow/conformance/reference.bpmn; the condition is a JavaScript script condition (the
// engine's own dialect) and the service tasks call a no-op service. Prints instances/s.
import { readFileSync } from 'node:fs';
import { Engine } from 'bpmn-engine';

const n = Number(process.argv[3] || 500);
const source = readFileSync(process.argv[2], 'utf8')
  .replace('<bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">=amount &lt; 0</bpmn:conditionExpression>',
    '<bpmn:conditionExpression xsi:type="bpmn:tFormalExpression" language="javascript">next(null, environment.variables.amount &lt; 0)</bpmn:conditionExpression>')
  .replaceAll(/<bpmn:serviceTask id="(\w)">.*?<\/bpmn:serviceTask>/g,
    '<bpmn:serviceTask id="$1" implementation="${environment.services.noop}"/>');

const noop = (_ctx, next) => next();
const started = performance.now();
for (let i = 0; i < n; i++) {
  const engine = new Engine({ name: `ref-${i}`, source });
  await new Promise((resolve, reject) => {
    engine.once('end', resolve);
    engine.once('error', reject);
    engine.execute({ variables: { amount: 42 }, services: { noop } }).catch(reject);
  });
}
const secs = (performance.now() - started) / 1000;
console.log(`bpmn-engine: ${n} reference instances in ${secs.toFixed(2)} s = ${Math.round(n / secs)} instances/s`);
