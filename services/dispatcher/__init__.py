"""Dispatcher: delivers routed alerts (cctv.alerts.<destination>.v1) to agencies' HTTP endpoints."""
