// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

interface IAgentRegistryView {
    function isRegistered(address agent) external view returns (bool);
    function isActive(address agent) external view returns (bool);
}

/// @title RewardPool
/// @notice Native value sent to the pool during an epoch is that epoch's reward. The oracle reports
///         each agent's contribution per epoch; once the epoch has ended anyone may distribute it, and
///         agents claim what is pending (or anyone claims for them: the value always goes to the agent).
///         The external ABI is the one deployed on Plumise (both reportContribution overloads).
///
/// Reward formula (reproduced off-chain by shared/chain/rewardFormula.ts, to the wei):
///   score(a)  = processedTokens*tokenWeight + taskCount*taskWeight + uptimeSeconds*uptimeWeight
///               + avgLatencyInv*latencyWeight                      (sums over the epoch's reports)
///   reward(a) = epochReward * score(a) / Σ score                    (integer division)
///   except the last scoring agent in report order, which gets epochReward minus the others' rewards,
///   so every wei is paid out. An epoch where nobody scored rolls its reward over to the current epoch.
/// Epochs are block based: epoch = (block.number - deployBlock) / BLOCKS_PER_EPOCH.
contract RewardPool {
    struct Contribution {
        uint256 taskCount;
        uint256 uptimeSeconds;
        uint256 responseScore;
        uint256 lastUpdated;
        uint256 processedTokens;
        uint256 avgLatencyInv;
    }

    uint256 public immutable BLOCKS_PER_EPOCH;
    uint256 public constant MAX_EPOCH_AGENTS = 200;
    uint256 public constant MAX_TASK_COUNT = 10_000;
    uint256 public constant MAX_UPTIME_SECONDS = 604_800;
    uint256 public constant MAX_RESPONSE_SCORE = 1_000_000;
    uint256 public constant MAX_PROCESSED_TOKENS = 100_000_000;
    uint256 public constant MAX_LATENCY_INV = 10_000;

    address public owner;
    address public oracle;
    IAgentRegistryView public agentRegistry;

    uint256 public tokenWeight = 40;
    uint256 public taskWeight = 25;
    uint256 public uptimeWeight = 20;
    uint256 public latencyWeight = 15;

    /// @notice Value the pool has accounted for (received minus paid out); syncRewards credits the rest.
    uint256 public lastTrackedBalance;
    /// @notice The last epoch a transaction observed (EpochAdvanced fires when it moves).
    uint256 public currentEpoch;
    uint256 public immutable deployBlock;

    mapping(address => Contribution) public contributions;
    mapping(address => uint256) public pendingRewards;
    mapping(uint256 => uint256) public epochRewards;
    mapping(uint256 => mapping(address => Contribution)) public epochContributions;
    mapping(uint256 => address[]) public epochAgents;
    mapping(uint256 => mapping(address => bool)) public epochAgentExists;
    mapping(uint256 => bool) public epochDistributed;

    event RewardReceived(uint256 amount, uint256 epoch);
    event ContributionReported(
        address indexed agent,
        uint256 taskCount,
        uint256 uptimeSeconds,
        uint256 responseScore,
        uint256 processedTokens,
        uint256 avgLatencyInv,
        uint256 epoch
    );
    event RewardsDistributed(uint256 indexed epoch, uint256 totalReward, uint256 agentCount);
    event RewardClaimed(address indexed agent, uint256 amount);
    event EpochAdvanced(uint256 epoch);
    event FormulaUpdated(uint256 tokenWeight, uint256 taskWeight, uint256 uptimeWeight, uint256 latencyWeight);
    event OracleUpdated(address indexed oldOracle, address indexed newOracle);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    modifier onlyOwner() {
        require(msg.sender == owner, "RewardPool: caller is not the owner");
        _;
    }

    constructor(address registry, address oracle_, uint256 blocksPerEpoch) {
        require(registry != address(0), "RewardPool: registry is zero");
        require(oracle_ != address(0), "RewardPool: oracle is zero");
        require(blocksPerEpoch > 0, "RewardPool: blocksPerEpoch is zero");
        owner = msg.sender;
        oracle = oracle_;
        agentRegistry = IAgentRegistryView(registry);
        BLOCKS_PER_EPOCH = blocksPerEpoch;
        deployBlock = block.number;
        emit OwnershipTransferred(address(0), msg.sender);
        emit OracleUpdated(address(0), oracle_);
    }

    receive() external payable {
        uint256 epoch = _advance();
        epochRewards[epoch] += msg.value;
        lastTrackedBalance += msg.value;
        emit RewardReceived(msg.value, epoch);
    }

    /// @notice Credits value that arrived without a call (block rewards, selfdestruct) to the current epoch.
    function syncRewards() external {
        uint256 epoch = _advance();
        uint256 balance = address(this).balance;
        if (balance <= lastTrackedBalance) return;
        uint256 amount = balance - lastTrackedBalance;
        epochRewards[epoch] += amount;
        lastTrackedBalance = balance;
        emit RewardReceived(amount, epoch);
    }

    /// @notice The deployed genesis pool's form: no token or latency figures.
    function reportContribution(address agent, uint256 taskCount, uint256 uptimeSeconds, uint256 responseScore)
        external
    {
        _report(agent, taskCount, uptimeSeconds, responseScore, 0, 0);
    }

    function reportContribution(
        address agent,
        uint256 taskCount,
        uint256 uptimeSeconds,
        uint256 responseScore,
        uint256 processedTokens,
        uint256 avgLatencyInv
    ) external {
        _report(agent, taskCount, uptimeSeconds, responseScore, processedTokens, avgLatencyInv);
    }

    function distributeRewards(uint256 epoch) external {
        uint256 now_ = _advance();
        require(epoch < now_, "RewardPool: epoch has not ended");
        require(!epochDistributed[epoch], "RewardPool: epoch already distributed");
        uint256 total = epochRewards[epoch];
        require(total > 0, "RewardPool: epoch has no rewards");
        epochDistributed[epoch] = true;

        address[] storage agents = epochAgents[epoch];
        uint256 n = agents.length;
        uint256[] memory scores = new uint256[](n);
        uint256 totalScore = 0;
        uint256 last = type(uint256).max;
        for (uint256 i = 0; i < n; i++) {
            scores[i] = _score(epochContributions[epoch][agents[i]]);
            totalScore += scores[i];
            if (scores[i] > 0) last = i;
        }
        if (totalScore == 0) {
            epochRewards[now_] += total; // nobody earned it: it stays in the pool for the current epoch
            emit RewardsDistributed(epoch, 0, 0);
            return;
        }
        uint256 paid = 0;
        for (uint256 i = 0; i < n; i++) {
            if (scores[i] == 0) continue;
            uint256 share = i == last ? total - paid : (total * scores[i]) / totalScore;
            pendingRewards[agents[i]] += share;
            paid += share;
        }
        emit RewardsDistributed(epoch, total, n);
    }

    function claimReward() external {
        _claim(msg.sender);
    }

    /// @notice Sponsored claim: the caller pays the gas, the reward goes to `agent`.
    function claimRewardFor(address agent) external {
        _claim(agent);
    }

    function setRewardFormula(uint256 tokenWeight_, uint256 taskWeight_, uint256 uptimeWeight_, uint256 latencyWeight_)
        external
        onlyOwner
    {
        require(tokenWeight_ + taskWeight_ + uptimeWeight_ + latencyWeight_ == 100, "RewardPool: weights must sum to 100");
        tokenWeight = tokenWeight_;
        taskWeight = taskWeight_;
        uptimeWeight = uptimeWeight_;
        latencyWeight = latencyWeight_;
        emit FormulaUpdated(tokenWeight_, taskWeight_, uptimeWeight_, latencyWeight_);
    }

    function setOracle(address oracle_) external onlyOwner {
        require(oracle_ != address(0), "RewardPool: oracle is zero");
        emit OracleUpdated(oracle, oracle_);
        oracle = oracle_;
    }

    function setAgentRegistry(address registry) external onlyOwner {
        require(registry != address(0), "RewardPool: registry is zero");
        agentRegistry = IAgentRegistryView(registry);
    }

    function transferOwnership(address newOwner) external onlyOwner {
        require(newOwner != address(0), "RewardPool: new owner is zero");
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }

    function getPendingReward(address agent) external view returns (uint256) {
        return pendingRewards[agent];
    }

    function getContribution(address agent) external view returns (Contribution memory) {
        return contributions[agent];
    }

    function getEpochContribution(uint256 epoch, address agent) external view returns (Contribution memory) {
        return epochContributions[epoch][agent];
    }

    function getEpochAgents(uint256 epoch) external view returns (address[] memory) {
        return epochAgents[epoch];
    }

    function getCurrentEpoch() public view returns (uint256) {
        return (block.number - deployBlock) / BLOCKS_PER_EPOCH;
    }

    function _report(
        address agent,
        uint256 taskCount,
        uint256 uptimeSeconds,
        uint256 responseScore,
        uint256 processedTokens,
        uint256 avgLatencyInv
    ) private {
        require(msg.sender == oracle, "RewardPool: caller is not the oracle");
        require(taskCount <= MAX_TASK_COUNT, "RewardPool: taskCount above MAX_TASK_COUNT");
        require(uptimeSeconds <= MAX_UPTIME_SECONDS, "RewardPool: uptimeSeconds above MAX_UPTIME_SECONDS");
        require(responseScore <= MAX_RESPONSE_SCORE, "RewardPool: responseScore above MAX_RESPONSE_SCORE");
        require(processedTokens <= MAX_PROCESSED_TOKENS, "RewardPool: processedTokens above MAX_PROCESSED_TOKENS");
        require(avgLatencyInv <= MAX_LATENCY_INV, "RewardPool: avgLatencyInv above MAX_LATENCY_INV");
        require(agentRegistry.isRegistered(agent), "RewardPool: agent not registered");
        require(agentRegistry.isActive(agent), "RewardPool: agent not active (no recent heartbeat, or slashed)");

        uint256 epoch = _advance();
        if (!epochAgentExists[epoch][agent]) {
            require(epochAgents[epoch].length < MAX_EPOCH_AGENTS, "RewardPool: epoch has MAX_EPOCH_AGENTS agents");
            epochAgentExists[epoch][agent] = true;
            epochAgents[epoch].push(agent);
        }
        _add(contributions[agent], taskCount, uptimeSeconds, responseScore, processedTokens, avgLatencyInv);
        _add(epochContributions[epoch][agent], taskCount, uptimeSeconds, responseScore, processedTokens, avgLatencyInv);
        emit ContributionReported(agent, taskCount, uptimeSeconds, responseScore, processedTokens, avgLatencyInv, epoch);
    }

    function _add(
        Contribution storage c,
        uint256 taskCount,
        uint256 uptimeSeconds,
        uint256 responseScore,
        uint256 processedTokens,
        uint256 avgLatencyInv
    ) private {
        c.taskCount += taskCount;
        c.uptimeSeconds += uptimeSeconds;
        c.responseScore += responseScore;
        c.processedTokens += processedTokens;
        c.avgLatencyInv += avgLatencyInv;
        c.lastUpdated = block.timestamp;
    }

    function _claim(address agent) private {
        _advance();
        require(agentRegistry.isRegistered(agent), "RewardPool: agent not registered");
        uint256 amount = pendingRewards[agent];
        require(amount > 0, "RewardPool: nothing to claim");
        pendingRewards[agent] = 0; // before the call: a re-entering claim finds nothing
        lastTrackedBalance -= amount;
        (bool ok,) = agent.call{value: amount}("");
        require(ok, "RewardPool: transfer to agent failed");
        emit RewardClaimed(agent, amount);
    }

    function _score(Contribution storage c) private view returns (uint256) {
        return c.processedTokens * tokenWeight + c.taskCount * taskWeight + c.uptimeSeconds * uptimeWeight
            + c.avgLatencyInv * latencyWeight;
    }

    function _advance() private returns (uint256 epoch) {
        epoch = getCurrentEpoch();
        if (epoch > currentEpoch) {
            currentEpoch = epoch;
            emit EpochAdvanced(epoch);
        }
    }
}
