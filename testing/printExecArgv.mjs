// Preload for tests: prints this process's pid and Node flags as one JSON line on stdout.
process.stdout.write(JSON.stringify({ pid: process.pid, execArgv: process.execArgv.filter((a) => !a.startsWith('--import') && !a.endsWith('printExecArgv.mjs')) }) + '\n')
