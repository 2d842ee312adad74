from actors.runtime.actor import actor_main
from actors.wal.shell import build

if __name__ == "__main__":
    actor_main("wal", build)
