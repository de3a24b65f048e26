import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Histogram, Registry } from 'prom-client'
import { parsePromText, promValue, PromTextError } from './promText.ts'

test('the strict Prometheus text parser reads prom-client output and refuses malformed expositions', async () => {
  const registry = new Registry()
  const h = new Histogram({ name: 'x_seconds', help: 'a "quoted" help\\n', labelNames: ['a'], buckets: [0.1, 1], registers: [registry] })
  h.observe({ a: 'line\nbreak "q" \\' }, 0.5)
  const families = parsePromText(await registry.metrics())
  assert.equal(families.get('x_seconds')!.type, 'histogram')
  assert.equal(promValue(families, 'x_seconds_bucket', { a: 'line\nbreak "q" \\', le: '1' }), 1)
  assert.equal(promValue(families, 'x_seconds_count', { a: 'line\nbreak "q" \\' }), 1)
  const bad = [
    'x 1\n', // no family
    '# TYPE x gauge\nx{a="1" 1\n', // unterminated labels
    '# TYPE x gauge\nx{a=1} 1\n', // unquoted value
    '# TYPE x gauge\nx one\n', // bad value
    '# TYPE x gauge\nx 1\nx 2\n', // duplicate series
    '# TYPE x gauge\nx 1', // no final newline
    '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_count 1\nh_sum 1\n', // not cumulative
    '# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_count 1\nh_sum 1\n', // +Inf != count
  ]
  for (const text of bad) assert.throws(() => parsePromText(text), PromTextError, JSON.stringify(text))
})
