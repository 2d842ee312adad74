from actors.metrics.shell import build
from actors.runtime.actor import actor_main

if __name__ == "__main__":
    actor_main("metrics", build)
