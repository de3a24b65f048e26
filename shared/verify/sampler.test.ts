import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createRng } from '../engine/sampling.ts'
import { createSampler, stepsToFirstCheck } from './sampler.ts'

test('at 5 % the first check of a peer comes after a geometric number of steps (mean 20, 95 % within 59)', () => {
  assert.equal(stepsToFirstCheck(0.05, 0.95), 59)
  const firsts: number[] = []
  for (let seed = 1; seed <= 4000; seed++) {
    const s = createSampler({ rate: 0.05, newPeerRate: 0.05, random: createRng(seed) })
    let n = 1
    while (!s.pick('peer')) n++
    firsts.push(n)
  }
  const mean = firsts.reduce((a, b) => a + b, 0) / firsts.length
  const within = firsts.filter((n) => n <= 59).length / firsts.length
  console.log(`# 4000 seeds: mean steps to the first check ${mean.toFixed(2)} (predicted 20), within 59: ${(within * 100).toFixed(1)} % (predicted 95 %)`)
  // Standard error of the mean: sqrt(1 - r) / r / sqrt(4000) = 0.31; of the share: 0.0034.
  assert.ok(Math.abs(mean - 20) < 1.3, `mean ${mean}`)
  assert.ok(Math.abs(within - 0.95) < 0.015, `share ${within}`)
})

test('new peers and peers that failed are checked at the higher rate until trusted', () => {
  const s = createSampler({ rate: 0.03, newPeerRate: 0.2, trustedAfter: 2 })
  assert.equal(s.rateOf('a'), 0.2)
  s.passed('a')
  s.passed('a')
  assert.equal(s.rateOf('a'), 0.03)
  s.failed('a')
  assert.equal(s.rateOf('a'), 0.2)
})
