# Configuration of the JupyterLab that ./run_lab.sh starts (loaded with --config).
#
# * Notebooks are saved WITHOUT outputs (mskseg_lib.notebook_files.pre_save_hook): what you save
#   is what you commit. jupytext (installed with the project) saves the paired notebooks/NN_name.py
#   at the same time, as configured in jupytext.toml. Executed copies with outputs are written by
#   run_all.sh to runs/<profile>/ and rendered to tables/<profile>/notebooks/*.html.
# * The server listens on 127.0.0.1 only.
c = get_config()  # noqa: F821 - provided by Jupyter when it loads this file

from mskseg_lib.notebook_files import pre_save_hook  # noqa: E402

c.ContentsManager.pre_save_hook = pre_save_hook
c.ServerApp.ip = "127.0.0.1"
