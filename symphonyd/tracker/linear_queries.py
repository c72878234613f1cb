"""Static GraphQL documents for Linear. Values travel only as variables (seed 000, invariant 3).

Nothing in this package formats a GraphQL document; tests assert every request body's query
is one of these constants.
"""

from __future__ import annotations

ISSUE_FIELDS = """
fragment SymphonyIssue on Issue {
  id
  identifier
  title
  description
  priority
  branchName
  url
  createdAt
  updatedAt
  state { id name type }
  assignee { id }
  team { id key }
  project { id slugId }
  labels(first: 50) { nodes { name } }
  inverseRelations(first: 50) {
    nodes { type issue { id identifier state { name type } } }
  }
}
"""

ISSUES_PAGE = (
    """
query SymphonyIssues($filter: IssueFilter!, $first: Int!, $after: String) {
  issues(filter: $filter, first: $first, after: $after, orderBy: createdAt) {
    nodes { ...SymphonyIssue }
    pageInfo { hasNextPage endCursor }
  }
}
"""
    + ISSUE_FIELDS
)

VIEWER = """
query SymphonyViewer {
  viewer { id }
}
"""

TEAM_STATES = """
query SymphonyIssueTeamStates($issueId: String!) {
  issue(id: $issueId) {
    id
    team { id states(first: 100) { nodes { id name type } } }
  }
}
"""

COMMENT_CREATE = """
mutation SymphonyCommentCreate($issueId: String!, $body: String!) {
  commentCreate(input: { issueId: $issueId, body: $body }) {
    success
    comment { id url }
  }
}
"""

ISSUE_MOVE = """
mutation SymphonyIssueMove($issueId: String!, $stateId: String!) {
  issueUpdate(id: $issueId, input: { stateId: $stateId }) {
    success
    issue { id state { name } }
  }
}
"""

# The documents the optional ``linear_graphql`` tool accepts: read-only, each keyed to the
# run's issue through ``$issueId``, which the tool binds itself.
GRAPHQL_TOOL_DOCUMENTS: dict[str, str] = {
    "issue_comments": """
query SymphonyToolIssueComments($issueId: String!, $first: Int) {
  issue(id: $issueId) { id comments(first: $first) { nodes { id body createdAt user { name } } } }
}
""",
    "issue_history": """
query SymphonyToolIssueHistory($issueId: String!, $first: Int) {
  issue(id: $issueId) {
    id
    history(first: $first) { nodes { id createdAt fromState { name } toState { name } } }
  }
}
""",
    "issue_attachments": """
query SymphonyToolIssueAttachments($issueId: String!, $first: Int) {
  issue(id: $issueId) { id attachments(first: $first) { nodes { id title url } } }
}
""",
    "issue_relations": """
query SymphonyToolIssueRelations($issueId: String!, $first: Int) {
  issue(id: $issueId) {
    id
    relations(first: $first) { nodes { type relatedIssue { identifier title } } }
  }
}
""",
}

ALL_DOCUMENTS = (
    ISSUES_PAGE,
    VIEWER,
    TEAM_STATES,
    COMMENT_CREATE,
    ISSUE_MOVE,
    *GRAPHQL_TOOL_DOCUMENTS.values(),
)
