#!/usr/bin/env python3
"""Generates Sluis's own ODRL test cases in the SolidLab suite layout.

Every expectation below is written by hand from ODRL 2.2 and the readings in README.md; the
evaluator is never used to produce them. Run: python3 generate.py (rewrites the folders).
"""
import os, shutil

HERE = os.path.dirname(os.path.abspath(__file__))
PREFIXES = """@prefix odrl: <http://www.w3.org/ns/odrl/2/>.
@prefix ex: <http://example.org/>.
@prefix temp: <http://example.com/request/>.
@prefix dct: <http://purl.org/dc/terms/>.
@prefix xsd: <http://www.w3.org/2001/XMLSchema#>.
@prefix report: <https://w3id.org/force/compliance-report#>.
@prefix sotw: <https://w3id.org/force/sotw#>.
"""

def lit(v):
    """A Turtle term: prefixed names stay, dateTimes/durations/integers get their datatype."""
    if isinstance(v, int):
        return f'"{v}"^^xsd:integer'
    if ':' in v and not v[0].isdigit() and not v.startswith('P'):
        return v
    if v.startswith('P'):
        return f'"{v}"^^xsd:duration'
    if len(v) == 10:
        return f'"{v}"^^xsd:date'
    return f'"{v}"^^xsd:dateTime'

class Case:
    def __init__(self, n, name, title):
        self.n, self.name, self.title = n, name, title
        self.rules, self.conflict, self.issued = [], None, None
        self.request = dict(assignee='ex:alice', action='odrl:read', target='ex:x', context=[])
        self.world = dict(now='2024-06-01T12:00:00Z', context=[], triples=[], duties={})
        self.decision = None

    def uid(self, local):
        return f'<urn:sluis:case:{self.n:03d}:{local}>'

def atomic(cid, left, op, right):
    return ('atomic', cid, left, op, right)

def logical(cid, op, operands):
    return ('logical', cid, op, operands)

def rule(c, rid, kind='permission', action='odrl:read', target='ex:x', assignee='ex:alice',
         constraints=(), duties=(), expect='Active', states=None, refinement=(), premises=None,
         target_collection=None):
    c.rules.append(dict(rid=rid, kind=kind, action=action, target=target, assignee=assignee,
                        constraints=list(constraints), duties=list(duties), expect=expect,
                        states=states or {}, refinement=list(refinement), premises=premises,
                        target_collection=target_collection))

def constraint_ttl(c, k, out):
    if k[0] == 'atomic':
        _, cid, left, op, right = k
        rights = ', '.join(lit(r) for r in right) if isinstance(right, list) else lit(right)
        out.append(f'{c.uid(cid)} a odrl:Constraint; odrl:leftOperand {left}; odrl:operator {op}; odrl:rightOperand {rights}.')
    else:
        _, cid, op, operands = k
        out.append(f'{c.uid(cid)} a odrl:LogicalConstraint; odrl:{op} ' + ', '.join(c.uid(o[1]) for o in operands) + '.')
        for o in operands:
            constraint_ttl(c, o, out)

def policy_ttl(c):
    out = [PREFIXES, f'{c.uid("policy")} a odrl:Set; odrl:uid {c.uid("policy")}; dct:description "{c.title}"']
    if c.issued:
        out[-1] += f'; dct:issued "{c.issued}"^^xsd:dateTime'
    if c.conflict:
        out[-1] += f'; odrl:conflict odrl:{c.conflict}'
    for kind in ['permission', 'prohibition', 'obligation']:
        ids = [c.uid(r['rid']) for r in c.rules if r['kind'] == kind]
        if ids:
            out[-1] += f'; odrl:{kind} ' + ', '.join(ids)
    out[-1] += '.'
    for r in c.rules:
        t = f'{c.uid(r["rid"])} a odrl:{r["kind"].capitalize() if r["kind"] != "obligation" else "Duty"}'
        if r['action']:
            if r['refinement']:
                t += f'; odrl:action {c.uid(r["rid"] + "-action")}'
                out.append(f'{c.uid(r["rid"] + "-action")} rdf:value {r["action"]}; odrl:refinement ' + ', '.join(c.uid(x[1]) for x in r['refinement']) + '.')
                for x in r['refinement']:
                    constraint_ttl(c, x, out)
            else:
                t += f'; odrl:action {r["action"]}'
        if r['target']:
            t += f'; odrl:target {r["target"]}'
        if r['assignee']:
            t += f'; odrl:assignee {r["assignee"]}'
        if r['constraints']:
            t += '; odrl:constraint ' + ', '.join(c.uid(x[1]) for x in r['constraints'])
        if r['duties']:
            t += '; odrl:duty ' + ', '.join(c.uid(d) for d in r['duties'])
        out.append(t + '.')
        for x in r['constraints']:
            constraint_ttl(c, x, out)
        for d in r['duties']:
            out.append(f'{c.uid(d)} a odrl:Duty; odrl:action odrl:compensate.')
        if r['target_collection']:
            refs = r['target_collection']
            out.append(f'{r["target"]} a odrl:AssetCollection; odrl:refinement ' + ', '.join(c.uid(x[1]) for x in refs) + '.')
            for x in refs:
                constraint_ttl(c, x, out)
    return '\n'.join(out).replace('@prefix report:', '@prefix rdf: <http://www.w3.org/1999/02/22-rdf-syntax-ns#>.\n@prefix report:') + '\n'

def context_ttl(pairs):
    return ''.join(f'; sotw:context [ odrl:leftOperand {l}; odrl:rightOperand {", ".join(lit(x) for x in (v if isinstance(v, list) else [v]))} ]' for l, v in pairs)

def request_ttl(c):
    r = c.request
    t = f'{c.uid("request-permission")} a odrl:Permission'
    for k in ['assignee', 'action', 'target']:
        if r[k]:
            t += f'; odrl:{k} {r[k]}'
    t += context_ttl(r['context']) + '.'
    return f'{PREFIXES}{c.uid("request")} a odrl:Request; odrl:uid {c.uid("request")}; odrl:permission {c.uid("request-permission")}.\n{t}\n'

def sotw_ttl(c):
    w = c.world
    out = [PREFIXES, f'{c.uid("sotw")} a ex:Sotw; ex:includes temp:currentTime' + context_ttl(w['context']) + '.',
           f'temp:currentTime dct:issued "{w["now"]}"^^xsd:dateTime.']
    out += w['triples']
    for duty, state in w['duties'].items():
        out.append(f'{c.uid(duty + "-report")} a report:DutyReport; report:rule {c.uid(duty)}; report:deonticState report:{state}.')
    return '\n'.join(out) + '\n'

def flatten(k):
    yield k
    if k[0] == 'logical':
        for o in k[3]:
            yield from flatten(o)

def case_ttl(c):
    out = [PREFIXES, f'{c.uid("testcase")} a ex:TestCase; dct:title "{c.title}"; ex:policy {c.uid("policy")}; ex:request {c.uid("request")}; ex:sotw {c.uid("sotw")}; ex:expectedReport {c.uid("report")}'
           + (f'; ex:expectedDecision ex:{c.decision}' if c.decision else '') + '.']
    out.append(f'{c.uid("report")} a report:PolicyReport; report:policy {c.uid("policy")}; report:ruleReport ' + ', '.join(c.uid(r['rid'] + '-report') for r in c.rules) + '.')
    for r in c.rules:
        kind = {'permission': 'PermissionReport', 'prohibition': 'ProhibitionReport', 'obligation': 'ObligationReport'}[r['kind']]
        prem = []
        premises = r['premises'] or {}
        for what, present in [('Target', r['target']), ('Party', r['assignee']), ('Action', r['action'])]:
            if present:
                pid = c.uid(f'{r["rid"]}-{what.lower()}-report')
                prem.append(pid)
                out.append(f'{pid} a report:{what}Report; report:satisfactionState report:{premises.get(what.lower(), "Satisfied")}.')
        tops = r['constraints'] + r['refinement'] + (r['target_collection'] or [])
        for top in tops:
            prem.append(c.uid(top[1] + '-report'))
            for k in flatten(top):
                cid = k[1]
                nested = ''
                if k[0] == 'logical':
                    nested = '; report:premiseReport ' + ', '.join(c.uid(o[1] + '-report') for o in k[3])
                out.append(f'{c.uid(cid + "-report")} a report:ConstraintReport; report:constraint {c.uid(cid)}{nested}; report:satisfactionState report:{r["states"][cid]}.')
        line = f'{c.uid(r["rid"] + "-report")} a report:{kind}; report:rule {c.uid(r["rid"])}; report:activationState report:{r["expect"]}'
        if prem:
            line += '; report:premiseReport ' + ', '.join(prem)
        out.append(line + '.')
    return '\n'.join(out) + '\n'

CASES = []
def new(name, title):
    c = Case(len(CASES) + 1, name, title)
    CASES.append(c)
    return c

S, U = 'Satisfied', 'Unsatisfied'
purpose = lambda cid, op, v: atomic(cid, 'odrl:purpose', f'odrl:{op}', v)
spatial = lambda cid, op, v: atomic(cid, 'odrl:spatial', f'odrl:{op}', v)

# ---- purpose ------------------------------------------------------------------------
for name, op, right, declared, st in [
    ('purpose-eq-match', 'eq', 'ex:research', ['ex:research'], S),
    ('purpose-eq-other', 'eq', 'ex:research', ['ex:marketing'], U),
    ('purpose-anyof-match', 'isAnyOf', ['ex:research', 'ex:statistics'], ['ex:statistics'], S),
    ('purpose-noneof-match', 'isNoneOf', ['ex:marketing'], ['ex:research'], S),
    ('purpose-noneof-hit', 'isNoneOf', ['ex:marketing'], ['ex:marketing'], U),
    ('purpose-undeclared', 'eq', 'ex:research', [], U),
    ('purpose-allof-superset', 'isAllOf', ['ex:research', 'ex:statistics'], [['ex:research', 'ex:statistics', 'ex:teaching']], S),
    ('purpose-allof-missing', 'isAllOf', ['ex:research', 'ex:statistics'], [['ex:research']], U),
]:
    c = new(name, f'Alice may read x for purpose {op} {right}; she declares {declared}.')
    rule(c, 'perm', constraints=[purpose('c1', op, right)], expect='Active' if st == S else 'Inactive', states={'c1': st})
    c.request['context'] = [('odrl:purpose', d) for d in declared]
    c.decision = 'Permit' if st == S else 'Deny'

# ---- spatial (the provider knows where the consumer is: world context) ----------------
for name, op, right, where, extra, st in [
    ('spatial-eq-match', 'eq', 'ex:EU', 'ex:EU', [], S),
    ('spatial-eq-other', 'eq', 'ex:EU', 'ex:US', [], U),
    ('spatial-partof-member', 'isPartOf', 'ex:EU', 'ex:NL', ['ex:NL odrl:partOf ex:EU.'], S),
    ('spatial-partof-transitive', 'isPartOf', 'ex:EU', 'ex:Utrecht', ['ex:Utrecht odrl:partOf ex:NL.', 'ex:NL odrl:partOf ex:EU.'], S),
    ('spatial-partof-outside', 'isPartOf', 'ex:EU', 'ex:US', ['ex:NL odrl:partOf ex:EU.'], U),
    ('spatial-haspart', 'hasPart', 'ex:NL', 'ex:EU', ['ex:NL odrl:partOf ex:EU.'], S),
    ('spatial-isa', 'isA', 'ex:Country', 'ex:NL', ['ex:NL a ex:Country.'], S),
    ('spatial-isa-not', 'isA', 'ex:Country', 'ex:EU', ['ex:NL a ex:Country.'], U),
    ('spatial-unknown', 'eq', 'ex:EU', None, [], U),
]:
    c = new(name, f'Alice may read x where spatial {op} {right}; she is at {where}.')
    rule(c, 'perm', constraints=[spatial('c1', op, right)], expect='Active' if st == S else 'Inactive', states={'c1': st})
    c.world['context'] = [('odrl:spatial', where)] if where else []
    c.world['triples'] = extra

# ---- count ------------------------------------------------------------------------------
for name, op, n, used, st in [
    ('count-below', 'lteq', 10, 3, S), ('count-at-bound', 'lteq', 10, 10, S),
    ('count-lt-at-bound', 'lt', 10, 10, U), ('count-over', 'lteq', 10, 11, U),
]:
    c = new(name, f'Alice may read x while count {op} {n}; used {used} times.')
    rule(c, 'perm', constraints=[atomic('c1', 'odrl:count', f'odrl:{op}', n)], expect='Active' if st == S else 'Inactive', states={'c1': st})
    c.world['context'] = [('odrl:count', used)]

# ---- elapsedTime (from the policy's dct:issued) --------------------------------------------
for name, op, d, now, st in [
    ('elapsed-within', 'lteq', 'P30D', '2024-01-15T00:00:00Z', S),
    ('elapsed-after', 'lteq', 'P30D', '2024-02-15T00:00:00Z', U),
    ('elapsed-lt-hour', 'lt', 'PT1H', '2024-01-01T00:59:59Z', S),
    ('elapsed-month-boundary', 'lteq', 'P1M', '2024-02-01T00:00:00Z', S),
    ('elapsed-month-past', 'lteq', 'P1M', '2024-02-01T00:00:01Z', U),
]:
    c = new(name, f'Alice may read x while elapsedTime {op} {d} since 2024-01-01; now {now}.')
    c.issued = '2024-01-01T00:00:00Z'
    rule(c, 'perm', constraints=[atomic('c1', 'odrl:elapsedTime', f'odrl:{op}', d)], expect='Active' if st == S else 'Inactive', states={'c1': st})
    c.world['now'] = now

# ---- a date compared with now means the whole UTC day ----------------------------------------
for name, op, st in [('date-eq-same-day', 'eq', S), ('date-gt-same-day', 'gt', U), ('date-lteq-same-day', 'lteq', S)]:
    c = new(name, f'Alice may read x while dateTime {op} 2024-06-01 (a date); now is noon that day.')
    rule(c, 'perm', constraints=[atomic('c1', 'odrl:dateTime', f'odrl:{op}', '2024-06-01')],
         expect='Active' if st == S else 'Inactive', states={'c1': st})

# ---- xone, or, andSequence ------------------------------------------------------------------
for name, op, decl, where, s1, s2, st in [
    ('xone-one', 'xone', 'ex:research', 'ex:US', S, U, S),
    ('xone-both', 'xone', 'ex:research', 'ex:EU', S, S, U),
    ('xone-none', 'xone', 'ex:marketing', 'ex:US', U, U, U),
    ('or-one', 'or', 'ex:marketing', 'ex:EU', U, S, S),
    ('or-none', 'or', 'ex:marketing', 'ex:US', U, U, U),
    ('andsequence-both', 'andSequence', 'ex:research', 'ex:EU', S, S, S),
    ('andsequence-first-fails', 'andSequence', 'ex:marketing', 'ex:EU', U, S, U),
    ('andsequence-second-fails', 'andSequence', 'ex:research', 'ex:US', S, U, U),
]:
    c = new(name, f'Alice may read x if {op}(purpose eq research, spatial eq EU).')
    rule(c, 'perm', constraints=[logical('l1', op, [purpose('c1', 'eq', 'ex:research'), spatial('c2', 'eq', 'ex:EU')])],
         expect='Active' if st == S else 'Inactive', states={'l1': st, 'c1': s1, 'c2': s2})
    c.request['context'] = [('odrl:purpose', decl)]
    c.world['context'] = [('odrl:spatial', where)]

c = new('nested-and-or', 'Alice may read x during 2024 if her purpose is research or statistics.')
rule(c, 'perm', constraints=[logical('l1', 'and', [
    logical('l2', 'or', [purpose('c1', 'eq', 'ex:research'), purpose('c2', 'eq', 'ex:statistics')]),
    atomic('c3', 'odrl:dateTime', 'odrl:gteq', '2024-01-01T00:00:00Z'),
    atomic('c4', 'odrl:dateTime', 'odrl:lt', '2025-01-01T00:00:00Z')])],
    states={'l1': S, 'l2': S, 'c1': U, 'c2': S, 'c3': S, 'c4': S})
c.request['context'] = [('odrl:purpose', 'ex:statistics')]

# ---- refinements ----------------------------------------------------------------------------
for name, decl, st in [('action-refinement-met', 'ex:research', S), ('action-refinement-unmet', 'ex:marketing', U)]:
    c = new(name, 'Alice may read x, the read refined to purpose research.')
    rule(c, 'perm', refinement=[purpose('r1', 'eq', 'ex:research')], expect='Active' if st == S else 'Inactive', states={'r1': st})
    c.request['context'] = [('odrl:purpose', decl)]
for name, where, st in [('asset-collection-refinement-met', 'ex:EU', S), ('asset-collection-refinement-unmet', 'ex:US', U)]:
    c = new(name, 'Alice may read the EU collection of assets (refined by spatial eq EU).')
    rule(c, 'perm', target='ex:euAssets', target_collection=[spatial('r1', 'eq', 'ex:EU')], expect='Active' if st == S else 'Inactive', states={'r1': st})
    c.world['triples'] = ['ex:x odrl:partOf ex:euAssets.']
    c.world['context'] = [('odrl:spatial', where)]

# ---- prohibitions under each conflict strategy ------------------------------------------------
for strategy in ['perm', 'prohibit', 'invalid']:
    for name, decl, p_state, decision in [
        ('both-active', 'ex:marketing', 'Active', {'perm': 'Permit', 'prohibit': 'Deny', 'invalid': 'Deny'}[strategy]),
        ('only-permission', 'ex:research', 'Inactive', 'Permit'),
    ]:
        c = new(f'conflict-{strategy}-{name}', f'Alice may read x but not for marketing; conflict {strategy}.')
        c.conflict = strategy
        rule(c, 'perm')
        rule(c, 'proh', kind='prohibition', constraints=[purpose('c1', 'eq', 'ex:marketing')],
             expect=p_state, states={'c1': S if p_state == 'Active' else U})
        c.request['context'] = [('odrl:purpose', decl)]
        c.decision = decision
c = new('prohibition-of-use-covers-read', 'Alice may read x; nobody may use x (default strategy invalid).')
rule(c, 'perm')
rule(c, 'proh', kind='prohibition', action='odrl:use', assignee=None)
c.decision = 'Deny'
c = new('prohibition-other-party', 'Alice may read x; Bob may not use x.')
rule(c, 'perm')
rule(c, 'proh', kind='prohibition', action='odrl:use', assignee='ex:bob', expect='Inactive', premises={'party': U})
c.decision = 'Permit'
c = new('prohibition-only', 'Nobody may read x; Alice asks to read x.')
rule(c, 'proh', kind='prohibition', assignee=None)
c.decision = 'Deny'

# ---- duties and obligations -------------------------------------------------------------------
for name, state, expect, decision in [('duty-fulfilled', 'Fulfilled', 'Active', 'Permit'),
                                      ('duty-violated', 'Violated', 'Inactive', 'Deny'),
                                      ('duty-nonset', 'NonSet', 'Active', 'Permit')]:
    c = new(name, f'Alice may read x if she compensates; the duty is {state}.')
    rule(c, 'perm', duties=['duty1'], expect=expect)
    c.world['duties'] = {'duty1': state}
    c.decision = decision
c = new('two-duties-one-violated', 'Alice may read x with two duties; one is violated.')
rule(c, 'perm', duties=['duty1', 'duty2'], expect='Inactive')
c.world['duties'] = {'duty1': 'Fulfilled', 'duty2': 'Violated'}
for name, now, st in [('obligation-active', '2024-06-01T12:00:00Z', S), ('obligation-not-yet', '2023-06-01T12:00:00Z', U)]:
    c = new(name, 'Alice must compensate from 2024 on.')
    rule(c, 'perm')
    rule(c, 'obl', kind='obligation', action='odrl:compensate', target=None,
         constraints=[atomic('c1', 'odrl:dateTime', 'odrl:gteq', '2024-01-01T00:00:00Z')],
         expect='Active' if st == S else 'Inactive', premises={'action': U}, states={'c1': st})
    # the obligation's action (compensate) is not what was requested (read): its action premise is unsatisfied
    rule_obl = c.rules[-1]
    rule_obl['expect'] = 'Inactive'
    c.world['now'] = now

# ---- recipient, party collections -------------------------------------------------------------
for name, who, st in [('recipient-is-requester', 'ex:alice', S), ('recipient-other', 'ex:bob', U)]:
    c = new(name, f'x may be read if the recipient is {who}.')
    rule(c, 'perm', assignee=None, constraints=[atomic('c1', 'odrl:recipient', 'odrl:eq', who)], expect='Active' if st == S else 'Inactive', states={'c1': st})
c = new('party-collection-transitive', 'Members of the consortium may read x; Alice is in a member organisation.')
rule(c, 'perm', assignee='ex:consortium')
c.world['triples'] = ['ex:alice odrl:partOf ex:orgA.', 'ex:orgA odrl:partOf ex:consortium.']
c = new('sell-not-under-use', 'Alice may use x; she asks to sell x (sell is under transfer, not use).')
rule(c, 'perm', action='odrl:use', expect='Inactive', premises={'action': U})
c.request['action'] = 'odrl:sell'
c.decision = 'Deny'

# ---- composite rules, compact policies, FORCE evaluation requests (hand-written Turtle) ----
RAW = []
def raw(name, policy, request, sotw, expected):
    RAW.append((name, policy, request, sotw, expected))

COMPOSITE = """<urn:sluis:raw:composite> a odrl:Set; odrl:uid <urn:sluis:raw:composite>;
  odrl:permission <urn:sluis:raw:composite:perm>.
<urn:sluis:raw:composite:perm> a odrl:Permission; odrl:action odrl:modify, odrl:read; odrl:target ex:x; odrl:assignee ex:alice."""
ALICE = lambda rid, action: f"""{rid} a odrl:Request; odrl:uid {rid}; odrl:permission {rid[:-1]}:p>.
{rid[:-1]}:p> a odrl:Permission; odrl:assignee ex:alice; odrl:action {action}; odrl:target ex:x."""
WORLD = lambda sid, now: f"""{sid} a ex:Sotw. temp:currentTime dct:issued "{now}"^^xsd:dateTime."""
def premises(rule, state, target='Satisfied', party='Satisfied', action='Satisfied', extra=''):
    return f"""<urn:sluis:raw:report> a report:PolicyReport; report:ruleReport <urn:sluis:raw:rr>.
<urn:sluis:raw:rr> a report:PermissionReport; report:rule {rule}; report:activationState report:{state};
  report:premiseReport <urn:sluis:raw:t>, <urn:sluis:raw:p>, <urn:sluis:raw:a>{extra}.
<urn:sluis:raw:t> a report:TargetReport; report:satisfactionState report:{target}.
<urn:sluis:raw:p> a report:PartyReport; report:satisfactionState report:{party}.
<urn:sluis:raw:a> a report:ActionReport; report:satisfactionState report:{action}."""

raw('composite-read', COMPOSITE, ALICE('<urn:sluis:raw:composite-read:req>', 'odrl:read'),
    WORLD('<urn:sluis:raw:composite-read:sotw>', '2024-06-01T00:00:00Z'),
    premises('<urn:sluis:raw:composite:perm>', 'Active'))
raw('composite-sell', COMPOSITE, ALICE('<urn:sluis:raw:composite-sell:req>', 'odrl:sell'),
    WORLD('<urn:sluis:raw:composite-sell:sotw>', '2024-06-01T00:00:00Z'),
    premises('<urn:sluis:raw:composite:perm>', 'Inactive', action='Unsatisfied'))
raw('compact-policy-action', """<urn:sluis:raw:compact> a odrl:Set; odrl:uid <urn:sluis:raw:compact>; odrl:action odrl:read;
  odrl:permission <urn:sluis:raw:compact:perm>.
<urn:sluis:raw:compact:perm> a odrl:Permission; odrl:target ex:x; odrl:assignee ex:alice.""",
    ALICE('<urn:sluis:raw:compact:req>', 'odrl:write'),
    WORLD('<urn:sluis:raw:compact:sotw>', '2024-06-01T00:00:00Z'),
    premises('<urn:sluis:raw:compact:perm>', 'Inactive', action='Unsatisfied'))
raw('evaluation-request-purpose-isa', """<urn:sluis:raw:isa> a odrl:Set; odrl:uid <urn:sluis:raw:isa>;
  odrl:permission <urn:sluis:raw:isa:perm>.
<urn:sluis:raw:isa:perm> a odrl:Permission; odrl:action odrl:read; odrl:target ex:x; odrl:assignee ex:alice;
  odrl:constraint <urn:sluis:raw:isa:c1>, <urn:sluis:raw:isa:c2>.
<urn:sluis:raw:isa:c1> a odrl:Constraint; odrl:leftOperand odrl:purpose; odrl:operator odrl:isA; odrl:rightOperand <https://w3id.org/dpv#AccountManagement>.
<urn:sluis:raw:isa:c2> a odrl:Constraint; odrl:leftOperand odrl:dateTime; odrl:operator odrl:gteq; odrl:rightOperand "2024-01-01T00:00:00Z"^^xsd:dateTime.""",
    """<urn:sluis:raw:isa:req> a sotw:EvaluationRequest; sotw:requestedAction odrl:read; sotw:requestingParty ex:alice; sotw:requestedTarget ex:x;
  sotw:requestParameter [ a sotw:RequestParameter; sotw:value "2024-02-12T11:20:10.999Z"^^xsd:dateTime; sotw:describesFeature sotw:TemporalData ],
    [ a sotw:RequestParameter; sotw:value ex:myPurpose; sotw:describesFeature sotw:Purpose ].
ex:myPurpose a <https://w3id.org/dpv#AccountManagement>.""",
    # the world's own clock says 2020: the time stated by the request wins
    WORLD('<urn:sluis:raw:isa:sotw>', '2020-01-01T00:00:00Z'),
    premises('<urn:sluis:raw:isa:perm>', 'Active', extra=', <urn:sluis:raw:c1r>, <urn:sluis:raw:c2r>') + """
<urn:sluis:raw:c1r> a report:ConstraintReport; report:constraint <urn:sluis:raw:isa:c1>; report:satisfactionState report:Satisfied.
<urn:sluis:raw:c2r> a report:ConstraintReport; report:constraint <urn:sluis:raw:isa:c2>; report:satisfactionState report:Satisfied.""")

def write_raw(start):
    for i, (name, policy, request, sotw, expected) in enumerate(RAW):
        n = start + i
        rid = request.split()[0]
        sid = sotw.split()[0]
        pid = policy.split()[0]
        case = f"""<urn:sluis:raw:case:{n}> a ex:TestCase; dct:title "{name}"; ex:policy {pid}; ex:request {rid}; ex:sotw {sid}; ex:expectedReport <urn:sluis:raw:report>.\n"""
        for path, text in [(f'policies/policy-{n}.ttl', policy), (f'requests/request-{n}.ttl', request),
                           (f'sotw/sotw-{n}.ttl', sotw), (f'test_cases/testcase-{n:03d}-{name}.ttl', case + expected)]:
            with open(os.path.join(HERE, path), 'w') as f:
                f.write(PREFIXES + text + '\n')

def main():
    for d in ['policies', 'requests', 'sotw', 'test_cases']:
        shutil.rmtree(os.path.join(HERE, d), ignore_errors=True)
        os.makedirs(os.path.join(HERE, d))
    for c in CASES:
        files = {f'policies/policy-{c.n}.ttl': policy_ttl(c), f'requests/request-{c.n}.ttl': request_ttl(c),
                 f'sotw/sotw-{c.n}.ttl': sotw_ttl(c), f'test_cases/testcase-{c.n:03d}-{c.name}.ttl': case_ttl(c)}
        for path, text in files.items():
            with open(os.path.join(HERE, path), 'w') as f:
                f.write(text)
    write_raw(len(CASES) + 1)
    print(f'{len(CASES) + len(RAW)} cases')

main()
