"""TaskFlow's worker-based engine over its in-memory transport: one unordered flow of N no-op
tasks run by 4 workers (threads), tasks per second. The anchor for weft's memory-remote and
pg-remote benchmarks (docs/benchmarks.md)."""
import logging, sys, time
from taskflow import engines, task
from taskflow.engines.worker_based import worker
from taskflow.patterns import unordered_flow as uf
from taskflow.utils import threading_utils


class Noop(task.Task):
    def execute(self):
        return None


def main(n):
    conf = {'exchange': 'taskflow', 'transport': 'memory',
            'transport_options': {'polling_interval': 0.01}}
    workers, topics = [], []
    for i in range(4):
        w = worker.Worker(topic='worker-%d' % i, tasks=['__main__:Noop'], **conf)
        t = threading_utils.daemon_thread(w.run)
        t.start()
        w.wait()
        workers.append((t, w))
        topics.append('worker-%d' % i)
    flow = uf.Flow('wide').add(*[Noop('t%d' % i) for i in range(n)])
    eng = engines.load(flow, engine='worker-based', topics=topics, max_workers=64, **conf)
    started = time.time()
    eng.run()
    took = time.time() - started
    for t, w in workers:
        w.stop()
        t.join()
    print('%d tasks in %.2f s: %.0f tasks/s' % (n, took, n / took))


if __name__ == '__main__':
    logging.basicConfig(level=logging.ERROR)
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
