"""The registry of tasks: task name -> `definition.TaskDefinition`.

Each task module in this package defines one `TASK`; this module only
collects them. The library (`tff_movierec`) never imports `tasks`.
"""

from typing import Dict

from tasks import centralized, eda, movielens_ablation, movielens_ease, movielens_next_movie
from tasks import movielens_fedrecon, movielens_rating, movielens_recon, movielens_retrieval
from tasks import movielens_ranking
from tasks.definition import TaskDefinition

TASKS: Dict[str, TaskDefinition] = {
    definition.name: definition for definition in (
        movielens_rating.TASK, movielens_recon.TASK, movielens_fedrecon.TASK,
        movielens_retrieval.TASK, movielens_ranking.TASK,
        movielens_next_movie.TASK, movielens_ease.TASK, movielens_ablation.TASK, eda.TASK,
        centralized.TASK)}
