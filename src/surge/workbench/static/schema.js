// A JSON value shaped like a JSON Schema, to prefill request bodies.

const MAX_DEPTH = 8;

function resolve(root, ref) {
  if (!ref.startsWith('#/')) return {};
  let node = root;
  for (const part of ref.slice(2).split('/')) {
    node = node?.[part.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return node ?? {};
}

function mainType(type) {
  if (Array.isArray(type)) return type.find((t) => t !== 'null') ?? 'null';
  return type;
}

/** A skeleton value for `schema`: defaults, examples, the first enum value, or empty values. */
export function skeleton(schema, root = schema, depth = 0) {
  if (!schema || typeof schema !== 'object' || depth > MAX_DEPTH) return null;
  if (schema.$ref) return skeleton(resolve(root, schema.$ref), root, depth + 1);
  if ('default' in schema) return schema.default;
  if ('const' in schema) return schema.const;
  if (Array.isArray(schema.examples) && schema.examples.length) return schema.examples[0];
  if (Array.isArray(schema.enum) && schema.enum.length) return schema.enum[0];
  for (const key of ['anyOf', 'oneOf']) {
    const options = schema[key];
    if (Array.isArray(options) && options.length) {
      const pick = options.find((s) => s && s.type !== 'null') ?? options[0];
      return skeleton(pick, root, depth + 1);
    }
  }
  if (Array.isArray(schema.allOf)) {
    return Object.assign({}, ...schema.allOf.map((s) => skeleton(s, root, depth + 1) ?? {}));
  }
  const type = mainType(schema.type) ?? (schema.properties ? 'object' : undefined);
  switch (type) {
    case 'object': {
      const out = {};
      const required = new Set(schema.required ?? []);
      const names = Object.keys(schema.properties ?? {});
      // Required fields first, then the optional ones (with their defaults).
      names.sort((a, b) => Number(required.has(b)) - Number(required.has(a)));
      for (const name of names) out[name] = skeleton(schema.properties[name], root, depth + 1);
      return out;
    }
    case 'array': return [];
    case 'string': return '';
    case 'integer':
    case 'number': return 0;
    case 'boolean': return false;
    default: return null;
  }
}
