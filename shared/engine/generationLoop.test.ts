import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createGenerationClock, runGenerationLoop, type LoopToken } from './generationLoop.ts'

/** A pipeline that answers each step with the next token of `tokens`, recording what it was given. */
function scripted(tokens: LoopToken[]) {
  const calls: Array<{ tokens: number[]; prefill: boolean }> = []
  let i = 0
  return {
    calls,
    step: async (input: number[], prefill: boolean) => {
      calls.push({ tokens: input, prefill })
      const t = tokens[i++]
      if (!t) throw new Error('asked for a step past the script')
      return t
    },
  }
}
const tok = (id: number, isEos = false): LoopToken => ({ id, isEos })

test('the loop prefills the prompt, then feeds back each token until the budget', async () => {
  const p = scripted([tok(5), tok(6), tok(7)])
  const out: number[] = []
  const reason = await runGenerationLoop({ inputIds: [1, 2], outputIds: out, maxNewTokens: 3, step: p.step, next: (t) => t, clock: createGenerationClock() })
  assert.equal(reason, 'length')
  assert.deepEqual(out, [5, 6, 7])
  // No step after the last token: the budget is known before asking.
  assert.deepEqual(p.calls, [{ tokens: [1, 2], prefill: true }, { tokens: [5], prefill: false }, { tokens: [6], prefill: false }])
})

test('an end-of-sequence token ends the loop and is kept; a stop from onToken wins over it', async () => {
  const eos = scripted([tok(5), tok(2, true), tok(9)])
  const out: number[] = []
  assert.equal(await runGenerationLoop({ inputIds: [1], outputIds: out, maxNewTokens: 10, step: eos.step, next: (t) => t, clock: createGenerationClock() }), 'eos')
  assert.deepEqual(out, [5, 2])

  const stop = scripted([tok(5), tok(2, true)])
  const seen: Array<[number, number]> = []
  const out2: number[] = []
  const reason = await runGenerationLoop({
    inputIds: [1],
    outputIds: out2,
    maxNewTokens: 10,
    step: stop.step,
    next: (t) => t,
    onToken: (t, i) => (seen.push([t.id, i]), t.id === 2 ? 'stop' : undefined),
    clock: createGenerationClock(),
  })
  assert.equal(reason, 'stop')
  assert.deepEqual(seen, [[5, 0], [2, 1]])
})

test('a replay prefills the prompt and the tokens so far, and counts the budget from them', async () => {
  const p = scripted([tok(7), tok(8)])
  const out = [5, 6]
  assert.equal(await runGenerationLoop({ inputIds: [1, 2], outputIds: out, maxNewTokens: 4, step: p.step, next: (t) => t, clock: createGenerationClock() }), 'length')
  assert.deepEqual(out, [5, 6, 7, 8])
  assert.deepEqual(p.calls[0], { tokens: [1, 2, 5, 6], prefill: true })
})

test('next sees the tokens before the new one is appended (sampling penalties read them)', async () => {
  const p = scripted([tok(5), tok(6)])
  const out: number[] = []
  const lengths: number[] = []
  await runGenerationLoop({ inputIds: [1], outputIds: out, maxNewTokens: 2, step: p.step, next: (t) => (lengths.push(out.length), t), clock: createGenerationClock() })
  assert.deepEqual(lengths, [0, 1])
})

test('the clock takes the prefill time at the first token only, across replays', async () => {
  const clock = createGenerationClock()
  await new Promise((r) => setTimeout(r, 20))
  clock.firstToken()
  const first = clock.timings(1)
  await new Promise((r) => setTimeout(r, 20))
  clock.firstToken()
  const later = clock.timings(3)
  assert.ok(first.prefillMs >= 15, `prefill ${first.prefillMs} ms`)
  assert.equal(later.prefillMs, first.prefillMs)
  assert.equal(first.decodeMsPerToken, 0)
  assert.ok(later.decodeMsPerToken >= 7, `decode ${later.decodeMsPerToken} ms per token`)
})
