import { parseAbi } from 'viem'

// The deployed Plumise ABIs (spec/plumise.md §4, the core SDK's RewardPool ABI), plus the few
// functions the project's own contracts add (marked). Typed as const so viem infers arguments and
// results; contracts.test.ts checks every entry against the compiled contracts.

export const agentRegistryAbi = parseAbi([
  'function registerAgent(bytes32 nodeId, string metadata)',
  'function heartbeat()',
  'function updateMetadata(string metadata)',
  'function deregisterAgent()',
  'function getAgent(address agent) view returns ((address wallet, bytes32 nodeId, string metadata, uint256 registeredAt, uint256 lastHeartbeat, uint8 status, uint256 stake))',
  'function getActiveAgents() view returns (address[])',
  'function getAllAgents() view returns (address[])',
  'function getActiveAgentCount() view returns (uint256)',
  'function getTotalAgentCount() view returns (uint256)',
  'function isActive(address agent) view returns (bool)',
  'function isRegistered(address agent) view returns (bool)',
  'function slashAgent(address agent)',
  'function HEARTBEAT_TIMEOUT() view returns (uint256)',
  'function owner() view returns (address)',
  'function transferOwnership(address newOwner)',
  // the project's addition: the heartbeat relay (agentHeartbeat stand-in)
  'function heartbeatFor(address agent)',
  'function heartbeatRelay() view returns (address)',
  'function setHeartbeatRelay(address relay)',
  'event AgentRegistered(address indexed agent, bytes32 indexed nodeId, string metadata)',
  'event AgentDeregistered(address indexed agent, bytes32 indexed nodeId)',
  'event Heartbeat(address indexed agent, uint256 timestamp)',
  'event AgentSlashed(address indexed agent, uint256 amount)',
  'event MetadataUpdated(address indexed agent, string metadata)',
  'event OwnershipTransferred(address indexed previousOwner, address indexed newOwner)',
  'event HeartbeatRelayUpdated(address indexed relay)',
])

/** `getAgent(...).status`. */
export const AgentStatus = { ACTIVE: 0, INACTIVE: 1, SLASHED: 2 } as const

const CONTRIBUTION =
  '(uint256 taskCount, uint256 uptimeSeconds, uint256 responseScore, uint256 lastUpdated, uint256 processedTokens, uint256 avgLatencyInv)'

export const rewardPoolAbi = parseAbi([
  'receive() external payable',
  'function getPendingReward(address agent) view returns (uint256)',
  'function claimReward()',
  'function claimRewardFor(address agent)',
  `function getContribution(address agent) view returns (${CONTRIBUTION})`,
  `function getEpochContribution(uint256 epoch, address agent) view returns (${CONTRIBUTION})`,
  'function getEpochAgents(uint256 epoch) view returns (address[])',
  'function getCurrentEpoch() view returns (uint256)',
  'function currentEpoch() view returns (uint256)',
  'function deployBlock() view returns (uint256)',
  'function BLOCKS_PER_EPOCH() view returns (uint256)',
  'function reportContribution(address agent, uint256 taskCount, uint256 uptimeSeconds, uint256 responseScore)',
  'function reportContribution(address agent, uint256 taskCount, uint256 uptimeSeconds, uint256 responseScore, uint256 processedTokens, uint256 avgLatencyInv)',
  'function syncRewards()',
  'function distributeRewards(uint256 epoch)',
  'function epochRewards(uint256 epoch) view returns (uint256)',
  'function epochDistributed(uint256 epoch) view returns (bool)',
  'function pendingRewards(address agent) view returns (uint256)',
  'function lastTrackedBalance() view returns (uint256)',
  'function tokenWeight() view returns (uint256)',
  'function taskWeight() view returns (uint256)',
  'function uptimeWeight() view returns (uint256)',
  'function latencyWeight() view returns (uint256)',
  'function setRewardFormula(uint256 tokenWeight, uint256 taskWeight, uint256 uptimeWeight, uint256 latencyWeight)',
  'function oracle() view returns (address)',
  'function setOracle(address oracle)',
  'function agentRegistry() view returns (address)',
  'function setAgentRegistry(address registry)',
  'function owner() view returns (address)',
  'function transferOwnership(address newOwner)',
  'function MAX_EPOCH_AGENTS() view returns (uint256)',
  'function MAX_TASK_COUNT() view returns (uint256)',
  'function MAX_UPTIME_SECONDS() view returns (uint256)',
  'function MAX_RESPONSE_SCORE() view returns (uint256)',
  'function MAX_PROCESSED_TOKENS() view returns (uint256)',
  'function MAX_LATENCY_INV() view returns (uint256)',
  'event RewardReceived(uint256 amount, uint256 epoch)',
  'event ContributionReported(address indexed agent, uint256 taskCount, uint256 uptimeSeconds, uint256 responseScore, uint256 processedTokens, uint256 avgLatencyInv, uint256 epoch)',
  'event RewardsDistributed(uint256 indexed epoch, uint256 totalReward, uint256 agentCount)',
  'event RewardClaimed(address indexed agent, uint256 amount)',
  'event EpochAdvanced(uint256 epoch)',
  'event FormulaUpdated(uint256 tokenWeight, uint256 taskWeight, uint256 uptimeWeight, uint256 latencyWeight)',
  'event OracleUpdated(address indexed oldOracle, address indexed newOracle)',
  'event OwnershipTransferred(address indexed previousOwner, address indexed newOwner)',
])

/** Events of the precompile stand-ins (devnet only: Plumise's native precompiles log nothing). */
export const precompileStandInAbi = parseAbi([
  'event AgentAccountRegistered(address indexed agent, bytes32 name, bytes32 modelHash, bytes32[] capabilities)',
  'event InferenceVerified(address indexed agent, bytes32 indexed proofHash, bytes32 modelHash, uint256 tokenCount)',
])
