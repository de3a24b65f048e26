// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

// Stand-ins for Plumise's agent precompiles on chains that lack them (the anvil devnet). Their
// runtime code is installed at the precompile addresses (0x…20 to 0x…23) with anvil_setCode, so a
// client sends the same calldata to the same addresses on both chains. Each parses exactly the
// calldata layout of spec/plumise.md §4 in its fallback; no constructor writes storage (only
// immutables, which live in the runtime code and so survive the move).

/// @dev Re-raises a failed call's revert data unchanged, so the caller sees the inner reason.
function bubble(bool ok, bytes memory ret) pure {
    if (!ok) {
        assembly {
            revert(add(ret, 32), mload(ret))
        }
    }
}

/// @dev A 32-byte word that must hold a left-padded address.
function wordToAddress(uint256 word, string memory what) pure returns (address) {
    require(word >> 160 == 0, what);
    return address(uint160(word));
}

interface IRegistryHeartbeat {
    function heartbeatFor(address agent) external;
}

interface IPoolForPrecompiles {
    function oracle() external view returns (address);
    function claimRewardFor(address agent) external;
}

/// @title agentRegister (0x…21)
/// @notice calldata `name (32, UTF-8 zero-padded) ‖ modelHash (32) ‖ capCount (uint256) ‖ capability (32) × capCount`
///         makes the sender an agent account. A 32-byte left-padded address instead queries whether
///         it is one (returns an ABI bool).
contract AgentRegisterPrecompile {
    struct Account {
        bytes32 name;
        bytes32 modelHash;
        uint256 capabilityCount;
    }

    mapping(address => Account) private accounts;

    event AgentAccountRegistered(address indexed agent, bytes32 name, bytes32 modelHash, bytes32[] capabilities);

    fallback(bytes calldata input) external returns (bytes memory) {
        if (input.length == 32) {
            address who = wordToAddress(uint256(bytes32(input)), "agentRegister: query word is not a left-padded address");
            return abi.encode(accounts[who].name != bytes32(0));
        }
        require(
            input.length >= 96 && input.length % 32 == 0,
            "agentRegister: calldata must be name(32) | modelHash(32) | capCount(32) | capability(32) x capCount"
        );
        bytes32 name = bytes32(input[0:32]);
        bytes32 modelHash = bytes32(input[32:64]);
        uint256 capCount = uint256(bytes32(input[64:96]));
        require(capCount == (input.length - 96) / 32, "agentRegister: capCount does not match the calldata length");
        require(name != bytes32(0), "agentRegister: name is empty");
        require(accounts[msg.sender].name == bytes32(0), "agentRegister: agent already registered");
        bytes32[] memory caps = new bytes32[](capCount);
        for (uint256 i = 0; i < capCount; i++) {
            caps[i] = bytes32(input[96 + 32 * i:128 + 32 * i]);
        }
        accounts[msg.sender] = Account(name, modelHash, capCount);
        emit AgentAccountRegistered(msg.sender, name, modelHash, caps);
        return abi.encode(true);
    }
}

/// @title verifyInference (0x…20)
/// @notice 160 bytes `modelHash ‖ inputHash ‖ outputHash ‖ agent ‖ tokenCount` (agent-last, the
///         agent's layout) or `agent ‖ modelHash ‖ inputHash ‖ outputHash ‖ tokenCount` (agent-first,
///         the contracts' test), chosen at deploy. Records the proof under
///         proofHash = keccak256(modelHash ‖ inputHash ‖ outputHash ‖ agent padded to 32).
///         32 bytes (a proofHash) instead queries it: returns the proven token count, 0 if unknown.
contract InferenceVerifier {
    address private immutable agentAccounts;
    bool private immutable agentFirst;

    mapping(bytes32 => uint256) private provenTokens;

    event InferenceVerified(address indexed agent, bytes32 indexed proofHash, bytes32 modelHash, uint256 tokenCount);

    constructor(address agentRegisterPrecompile, bool agentFirstLayout) {
        agentAccounts = agentRegisterPrecompile;
        agentFirst = agentFirstLayout;
    }

    fallback(bytes calldata input) external returns (bytes memory) {
        if (input.length == 32) return abi.encode(provenTokens[bytes32(input)]);
        require(input.length == 160, "verifyInference: calldata must be 160 bytes (or a 32-byte proofHash to query)");
        bytes32 modelHash;
        bytes32 inputHash;
        bytes32 outputHash;
        uint256 agentWord;
        uint256 tokenCount;
        if (agentFirst) {
            (agentWord, modelHash, inputHash, outputHash, tokenCount) =
                abi.decode(input, (uint256, bytes32, bytes32, bytes32, uint256));
        } else {
            (modelHash, inputHash, outputHash, agentWord, tokenCount) =
                abi.decode(input, (bytes32, bytes32, bytes32, uint256, uint256));
        }
        address agent = wordToAddress(agentWord, "verifyInference: agent word is not a left-padded address (wrong layout?)");
        require(agent == msg.sender, "verifyInference: sender is not the agent");
        require(tokenCount > 0, "verifyInference: tokenCount is zero");
        (bool ok, bytes memory ret) = agentAccounts.staticcall(abi.encode(agent));
        bubble(ok, ret);
        require(abi.decode(ret, (bool)), "verifyInference: agent not registered");
        bytes32 proofHash = keccak256(abi.encode(modelHash, inputHash, outputHash, agentWord));
        require(provenTokens[proofHash] == 0, "verifyInference: duplicate proof");
        provenTokens[proofHash] = tokenCount;
        emit InferenceVerified(agent, proofHash, modelHash, tokenCount);
        return abi.encode(true);
    }
}

/// @title agentHeartbeat (0x…22)
/// @notice Empty calldata: a heartbeat for the sender. A 32-byte left-padded address: a heartbeat
///         for that agent, sent by the agent itself or by the operator (the RewardPool's oracle).
///         Recorded in the AgentRegistry, whose heartbeat relay this contract is.
contract AgentHeartbeatPrecompile {
    address private immutable registry;
    address private immutable pool;

    constructor(address agentRegistry, address rewardPool) {
        registry = agentRegistry;
        pool = rewardPool;
    }

    fallback(bytes calldata input) external returns (bytes memory) {
        address agent = msg.sender;
        if (input.length == 32) {
            agent = wordToAddress(uint256(bytes32(input)), "agentHeartbeat: calldata word is not a left-padded address");
            require(
                agent == msg.sender || msg.sender == IPoolForPrecompiles(pool).oracle(),
                "agentHeartbeat: sender is neither the agent nor the operator"
            );
        } else {
            require(input.length == 0, "agentHeartbeat: calldata must be empty or a 32-byte address");
        }
        (bool ok, bytes memory ret) = registry.call(abi.encodeCall(IRegistryHeartbeat.heartbeatFor, (agent)));
        bubble(ok, ret);
        return abi.encode(true);
    }
}

/// @title claim (0x…23)
/// @notice A 32-byte left-padded agent address (operator-sponsored) or empty calldata (the sender):
///         claims that agent's pending reward from the RewardPool; the value goes to the agent.
contract ClaimRewardPrecompile {
    address private immutable pool;

    constructor(address rewardPool) {
        pool = rewardPool;
    }

    fallback(bytes calldata input) external returns (bytes memory) {
        address agent = msg.sender;
        if (input.length == 32) {
            agent = wordToAddress(uint256(bytes32(input)), "claim: calldata word is not a left-padded address");
        } else {
            require(input.length == 0, "claim: calldata must be empty or a 32-byte address");
        }
        (bool ok, bytes memory ret) = pool.call(abi.encodeCall(IPoolForPrecompiles.claimRewardFor, (agent)));
        bubble(ok, ret);
        return abi.encode(true);
    }
}
