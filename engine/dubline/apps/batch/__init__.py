"""``dubline batch``'s machinery: shots run by worker actors on Ray (or in this process).

    worker   ShotWorker: keeps models and analyses resident, runs shots, reports progress
    pools    a local Ray or a cluster (RayPool), or this process (InlinePool); Ray offline
    runner   run_batch: check paths, cluster speakers, dispatch, retry, stop cleanly
    inputs   a timeline or job list in; the report and the reel's timeline out

The CLI (``apps/cli/batch.py``) and the engine's ``RenderBatch`` RPC both drive ``run_batch``.
"""

from dubline.apps.batch.inputs import BatchInput, finish, plan_input
from dubline.apps.batch.runner import BatchEvent, BatchOptions, BatchRun, run_batch
from dubline.apps.batch.worker import ShotWorker, WorkerRecipe

__all__ = ["BatchEvent", "BatchInput", "BatchOptions", "BatchRun", "ShotWorker", "WorkerRecipe", "finish",
           "plan_input", "run_batch"]
