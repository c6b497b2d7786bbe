"""Subprocesses, thread and process pool executors, to_thread."""

import asyncio
import concurrent.futures
import sys


def square(n):
    return n * n


async def main():
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; print(sys.stdin.read().upper()); sys.exit(3)",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate(b"hello from the parent")
    print("exec:", out.decode().strip(), "exit", proc.returncode)
    shell = await asyncio.create_subprocess_shell("echo shell says hi", stdout=asyncio.subprocess.PIPE)
    line = await shell.stdout.readline()
    print("shell:", line.decode().strip(), "exit", await shell.wait())
    slow = await asyncio.create_subprocess_exec(sys.executable, "-c", "import time; time.sleep(30)")
    try:
        await asyncio.wait_for(slow.wait(), timeout=0.2)
    except TimeoutError:
        slow.kill()
        print("killed slow child, exit", await slow.wait())
    loop = asyncio.get_running_loop()
    print("default executor:", await loop.run_in_executor(None, square, 7))
    print("to_thread:", await asyncio.to_thread(square, 8))
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        print("thread pool:", await asyncio.gather(*(loop.run_in_executor(pool, square, i) for i in range(5))))
    with concurrent.futures.ProcessPoolExecutor(max_workers=2) as pool:
        print("process pool:", await asyncio.gather(*(loop.run_in_executor(pool, square, i) for i in range(5))))
    wrapped = asyncio.wrap_future(concurrent.futures.ThreadPoolExecutor(1).submit(square, 9))
    print("wrap_future:", await wrapped)


if __name__ == "__main__":
    asyncio.run(main())
