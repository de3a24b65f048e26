import { Template } from '@huggingface/jinja'

export type ChatMessage = { role: 'system' | 'user' | 'assistant' | 'tool' | 'developer'; content: string }

/**
 * Renders a conversation into a prompt with the checkpoint's `chat_template` (tokenizer_config.json),
 * the way `apply_chat_template(add_generation_prompt=True)` does; models without one get a plain
 * "role: content" transcript ending with "assistant:".
 */
export function renderChat(messages: ChatMessage[], tokenizerConfig: Record<string, unknown>): string {
  const template = tokenizerConfig.chat_template
  if (typeof template === 'string' && template.length > 0) {
    const tokenText = (v: unknown) => (typeof v === 'string' ? v : (v as { content?: string } | undefined)?.content ?? '')
    return new Template(template).render({
      messages,
      add_generation_prompt: true,
      bos_token: tokenText(tokenizerConfig.bos_token),
      eos_token: tokenText(tokenizerConfig.eos_token),
    })
  }
  return `${messages.map((m) => `${m.role}: ${m.content}`).join('\n')}\nassistant:`
}
