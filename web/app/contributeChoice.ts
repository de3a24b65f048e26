import { z } from 'zod'

const KEY = 'shardmesh.contribute'
const choiceSchema = z.object({ contributing: z.boolean().default(false), memoryMb: z.number().positive().optional() })

/** What the person chose last time, kept in localStorage: a reload resumes it. */
export type ContributeChoice = z.infer<typeof choiceSchema>

export function loadContributeChoice(): ContributeChoice {
  try {
    const parsed = choiceSchema.safeParse(JSON.parse(localStorage.getItem(KEY) ?? '{}'))
    return parsed.success ? parsed.data : { contributing: false }
  } catch {
    return { contributing: false }
  }
}

export function saveContributeChoice(choice: ContributeChoice): void {
  try {
    localStorage.setItem(KEY, JSON.stringify(choice))
  } catch {
    // Storage off (private mode): the choice lasts this visit only.
  }
}
