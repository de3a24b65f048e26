// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title AgentRegistry
/// @notice Agents (inference hosts) register a node id and JSON metadata under their wallet and
///         prove liveness with heartbeats. The external ABI (functions, events, struct layout) is
///         the one deployed on Plumise, so selectors, topics and return encodings match.
/// @dev Addition for chains without Plumise's precompiles: a heartbeat relay (the agentHeartbeat
///      stand-in) may record heartbeats for an agent.
///      A node id is a claim, not an ownership: the chain cannot check the Ed25519 signature that
///      binds a libp2p peer to a wallet (Plumise has no Ed25519 precompile), so a first-come lock on
///      node ids would hand each id to whoever registers it first, a stranger included, and lock the
///      real host out. Any number of wallets may name one node id; the Oracle credits a wallet with
///      a peer's work only when the metadata carries that peer's signature over (chain id, wallet).
contract AgentRegistry {
    enum AgentStatus {
        ACTIVE,
        INACTIVE,
        SLASHED
    }

    struct Agent {
        address wallet;
        bytes32 nodeId;
        string metadata;
        uint256 registeredAt;
        uint256 lastHeartbeat;
        AgentStatus status;
        uint256 stake;
    }

    /// @notice Seconds without a heartbeat after which an agent counts as inactive.
    uint256 public constant HEARTBEAT_TIMEOUT = 300;

    address public owner;
    /// @notice May record heartbeats on an agent's behalf (the agentHeartbeat precompile stand-in).
    address public heartbeatRelay;

    mapping(address => Agent) private agents;
    address[] private agentList;
    /// @dev Position in agentList plus one (0: absent), for O(1) removal.
    mapping(address => uint256) private listSlot;

    event AgentRegistered(address indexed agent, bytes32 indexed nodeId, string metadata);
    event AgentDeregistered(address indexed agent, bytes32 indexed nodeId);
    event Heartbeat(address indexed agent, uint256 timestamp);
    event AgentSlashed(address indexed agent, uint256 amount);
    event MetadataUpdated(address indexed agent, string metadata);
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);
    event HeartbeatRelayUpdated(address indexed relay);

    modifier onlyOwner() {
        require(msg.sender == owner, "AgentRegistry: caller is not the owner");
        _;
    }

    modifier onlyRegistered(address agent) {
        require(agents[agent].wallet != address(0), "AgentRegistry: agent not registered");
        _;
    }

    constructor() {
        owner = msg.sender;
        emit OwnershipTransferred(address(0), msg.sender);
    }

    function registerAgent(bytes32 nodeId, string calldata metadata) external {
        require(agents[msg.sender].wallet == address(0), "AgentRegistry: agent already registered");
        require(nodeId != bytes32(0), "AgentRegistry: nodeId is zero");

        agents[msg.sender] = Agent({
            wallet: msg.sender,
            nodeId: nodeId,
            metadata: metadata,
            registeredAt: block.timestamp,
            lastHeartbeat: block.timestamp,
            status: AgentStatus.ACTIVE,
            stake: 0
        });
        agentList.push(msg.sender);
        listSlot[msg.sender] = agentList.length;
        emit AgentRegistered(msg.sender, nodeId, metadata);
    }

    function heartbeat() external onlyRegistered(msg.sender) {
        _beat(msg.sender);
    }

    /// @notice A heartbeat recorded by the relay for `agent` (the relay checks who may send it).
    function heartbeatFor(address agent) external onlyRegistered(agent) {
        require(msg.sender == heartbeatRelay, "AgentRegistry: caller is not the heartbeat relay");
        _beat(agent);
    }

    function updateMetadata(string calldata metadata) external onlyRegistered(msg.sender) {
        agents[msg.sender].metadata = metadata;
        emit MetadataUpdated(msg.sender, metadata);
    }

    function deregisterAgent() external onlyRegistered(msg.sender) {
        bytes32 nodeId = agents[msg.sender].nodeId;
        uint256 slot = listSlot[msg.sender];
        address last = agentList[agentList.length - 1];
        agentList[slot - 1] = last;
        listSlot[last] = slot;
        agentList.pop();
        delete listSlot[msg.sender];
        delete agents[msg.sender];
        emit AgentDeregistered(msg.sender, nodeId);
    }

    /// @notice Marks an agent SLASHED (it stops counting as active). Stakes are not held here, so
    ///         the slashed amount is the recorded stake, always zero in this registry.
    function slashAgent(address agent) external onlyOwner onlyRegistered(agent) {
        uint256 amount = agents[agent].stake;
        agents[agent].stake = 0;
        agents[agent].status = AgentStatus.SLASHED;
        emit AgentSlashed(agent, amount);
    }

    function setHeartbeatRelay(address relay) external onlyOwner {
        heartbeatRelay = relay;
        emit HeartbeatRelayUpdated(relay);
    }

    function transferOwnership(address newOwner) external onlyOwner {
        require(newOwner != address(0), "AgentRegistry: new owner is zero");
        emit OwnershipTransferred(owner, newOwner);
        owner = newOwner;
    }

    /// @notice The agent's record; `status` reads INACTIVE once the heartbeat is older than the timeout.
    function getAgent(address agent) external view returns (Agent memory record) {
        record = agents[agent];
        if (record.wallet != address(0) && record.status == AgentStatus.ACTIVE && !_fresh(record.lastHeartbeat)) {
            record.status = AgentStatus.INACTIVE;
        }
    }

    function getActiveAgents() external view returns (address[] memory active) {
        active = new address[](agentList.length);
        uint256 n = 0;
        for (uint256 i = 0; i < agentList.length; i++) {
            if (isActive(agentList[i])) active[n++] = agentList[i];
        }
        assembly {
            mstore(active, n) // shrink to the active ones
        }
    }

    function getAllAgents() external view returns (address[] memory) {
        return agentList;
    }

    function getActiveAgentCount() external view returns (uint256 n) {
        for (uint256 i = 0; i < agentList.length; i++) {
            if (isActive(agentList[i])) n++;
        }
    }

    function getTotalAgentCount() external view returns (uint256) {
        return agentList.length;
    }

    function isActive(address agent) public view returns (bool) {
        Agent storage a = agents[agent];
        return a.wallet != address(0) && a.status != AgentStatus.SLASHED && _fresh(a.lastHeartbeat);
    }

    function isRegistered(address agent) external view returns (bool) {
        return agents[agent].wallet != address(0);
    }

    function _beat(address agent) private {
        Agent storage a = agents[agent];
        a.lastHeartbeat = block.timestamp;
        emit Heartbeat(agent, block.timestamp);
    }

    function _fresh(uint256 lastHeartbeat) private view returns (bool) {
        return block.timestamp - lastHeartbeat <= HEARTBEAT_TIMEOUT;
    }
}
