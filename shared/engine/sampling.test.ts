import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createRng, sampleToken } from './sampling.ts'

const logits = Float32Array.from([1, 3, 2, -1, 0.5])

test('greedy picks the largest logit; temperature 0 ignores the generator', () => {
  assert.equal(sampleToken(logits, {}, [], createRng(1)), 1)
  assert.equal(sampleToken(logits, { temperature: 0, topK: 2 }, [], () => 0.99), 1)
})

test('repetition penalty follows Plumise: positive logits divided, negative multiplied, generated tokens only', () => {
  // 3 / 2 = 1.5 < 2: token 2 wins once token 1 was generated.
  assert.equal(sampleToken(logits, { repetitionPenalty: 2 }, [1], createRng(1)), 2)
  const neg = Float32Array.from([-1, -1.5])
  // -1 * 2 = -2 < -1.5: token 1 wins once token 0 was generated.
  assert.equal(sampleToken(neg, { repetitionPenalty: 2 }, [0], createRng(1)), 1)
})

test('the same seed gives the same tokens; another seed gives another sequence', () => {
  const run = (seed: number) => {
    const rng = createRng(seed)
    return Array.from({ length: 64 }, () => sampleToken(logits, { temperature: 1.5 }, [], rng))
  }
  assert.deepEqual(run(7), run(7))
  assert.notDeepEqual(run(7), run(8))
})

test('top-k and top-p restrict the candidates', () => {
  const rng = createRng(3)
  const draws = (p: Parameters<typeof sampleToken>[1]) => new Set(Array.from({ length: 400 }, () => sampleToken(logits, p, [], rng)))
  assert.deepEqual([...draws({ temperature: 5, topK: 2 })].sort(), [1, 2])
  // softmax([1,3,2,-1,.5]): token 1 has 0.63, tokens 1+2 have 0.87: top-p 0.8 keeps two.
  assert.deepEqual([...draws({ temperature: 1, topP: 0.8 })].sort(), [1, 2])
  assert.equal(draws({ temperature: 1, topP: 0.5 }).size, 1)
  assert.equal(draws({ temperature: 5 }).size, 5)
})

test('sampling follows the softmax distribution', () => {
  const rng = createRng(11)
  const counts = new Array(5).fill(0)
  const N = 20000
  for (let i = 0; i < N; i++) counts[sampleToken(logits, { temperature: 1 }, [], rng)]++
  const z = [...logits].reduce((a, l) => a + Math.exp(l), 0)
  counts.forEach((c, i) => assert.ok(Math.abs(c / N - Math.exp(logits[i]!) / z) < 0.015, `token ${i}: ${c / N}`))
})
