"""One router per area of the API; `serving.app.ROUTERS` lists the ones the app includes."""
