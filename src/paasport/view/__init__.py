"""The read model: status, mesh, events, deploy history and hosts as frozen views with to_json.

``paasport.cli`` renders these views and the HTTP API serves their JSON; neither computes them.
"""
