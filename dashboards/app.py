"""imgaudit dashboard: ``audit dashboard RUN`` (or ``streamlit run dashboards/app.py -- --run RUN``).

Multipage app (``st.navigation``); the pages live in ``app_pages/`` and read run directories only through
``audit.views`` / ``audit.rundir`` (see dashlib.py). The sidebar switches between the run directories found
next to (or under) the path given on the command line.
"""

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:  # dashlib sits next to this file (source checkout and installed wheel alike)
    sys.path.insert(0, str(_HERE))

import dashlib as dl
import streamlit as st

from audit.errors import AuditError

# An emoji favicon is drawn in the browser (a data: URL); a ":material/...:" page icon is fetched from
# fonts.gstatic.com on every page load, and the dashboard must work offline and call no other host.
st.set_page_config(page_title="imgaudit", page_icon="🔎", layout="wide")

pages = {
    key: st.Page(path, title=title, icon=icon, url_path=key, default=(key == "overview"))
    for key, (path, title, icon) in dl.PAGE_FILES.items()
}
st.session_state["_pages"] = pages

try:
    dl.sidebar()
except AuditError as e:
    st.title("imgaudit dashboard")
    st.error(dl.esc(e))
    st.stop()

st.navigation(list(pages.values())).run()
