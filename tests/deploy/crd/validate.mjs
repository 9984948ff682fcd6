// Validates custom resources against the JSON schemas of their CRDs, offline.
// Input on stdin: a JSON array of objects. Output: one JSON line per object.
// Exit status 1 when any object fails or has a kind without a schema here.
import { readFileSync } from "node:fs";
import * as keda from "@kubernetes-models/keda/keda.sh/v1alpha1";
import * as monitoring from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

const models = new Map(
  [
    monitoring.PodMonitor,
    monitoring.ServiceMonitor,
    monitoring.PrometheusRule,
    keda.ScaledObject,
    keda.TriggerAuthentication,
  ].map((model) => [`${model.apiVersion}/${model.kind}`, model]),
);

let failed = false;
for (const object of JSON.parse(readFileSync(0, "utf8"))) {
  const key = `${object.apiVersion}/${object.kind}`;
  const result = { kind: key, name: object.metadata?.name ?? null, ok: true, errors: [] };
  const Model = models.get(key);
  if (!Model) {
    result.ok = false;
    result.errors.push("no schema for this kind");
  } else {
    try {
      new Model(object).validate();
    } catch (error) {
      result.ok = false;
      const details = error.errors ?? [];
      result.errors = details.length
        ? details.map((e) => `${e.instancePath || "/"} ${e.message ?? e.keyword}`)
        : [String(error.message)];
    }
  }
  failed ||= !result.ok;
  console.log(JSON.stringify(result));
}
process.exit(failed ? 1 : 0);
