"""The app's shared Streamlit pieces: cached loaders, the sidebar, common widgets."""
