"""The analyst's dashboards as ipywidgets: one module per page plus shared formats and components.

Each ``*_dashboard()`` returns the page widget for Voila (``dashboards/*.ipynb`` are one-liners calling
them); each ``*Dashboard`` class exposes its widgets so tests can fill and click them without a browser.
"""

from .context import AppContext, Workspace
from .ops_monitor import OpsMonitorDashboard, ops_monitor_dashboard
from .permutations import PermutationsDashboard, permutations_dashboard
from .projects import ProjectsDashboard, projects_dashboard
from .run import RunDashboard, run_dashboard
from .securitisation import SecuritisationDashboard, securitisation_dashboard

__all__ = ["AppContext", "OpsMonitorDashboard", "PermutationsDashboard", "ProjectsDashboard", "RunDashboard",
           "SecuritisationDashboard", "Workspace", "ops_monitor_dashboard", "permutations_dashboard",
           "projects_dashboard", "run_dashboard", "securitisation_dashboard"]
