import { createRouter, createWebHistory } from 'vue-router'
import { ApiError, setUnauthenticatedHandler } from './api/client'
import { loadMe, session } from './session'

export const router = createRouter({
  history: createWebHistory(),
  routes: [
    { path: '/login', component: () => import('./views/LoginView.vue'), meta: { public: true } },
    // The grid worker's phone page: full screen, no sidebar.
    { path: '/m', component: () => import('./views/GridMobile.vue'), meta: { title: '网格员工作台' } },
    {
      path: '/',
      component: () => import('./views/ShellLayout.vue'),
      children: [
        { path: '', component: () => import('./views/PortalHome.vue'), meta: { title: '门户首页' } },
        { path: 'profile', component: () => import('./views/ProfileView.vue'), meta: { title: '个人中心' } },
        { path: 'admin/orgs', component: () => import('./views/OrgsView.vue'), meta: { title: '组织机构' } },
        { path: 'admin/users', component: () => import('./views/UsersView.vue'), meta: { title: '用户管理' } },
        { path: 'admin/roles', component: () => import('./views/RolesView.vue'), meta: { title: '角色权限' } },
        { path: 'admin/policy', component: () => import('./views/PolicyView.vue'), meta: { title: '安全策略' } },
        { path: 'admin/alerts', component: () => import('./views/SecurityAlerts.vue'), meta: { title: '安全告警' } },
        { path: 'admin/apps', component: () => import('./views/AppsView.vue'), meta: { title: '接入应用' } },
        { path: 'admin/audit', component: () => import('./views/AuditView.vue'), meta: { title: '安全审计' } },
        { path: 'flow/tasks', component: () => import('./views/FlowTasks.vue'), meta: { title: '待办事项' } },
        { path: 'flow/models', component: () => import('./views/FlowModels.vue'), meta: { title: '流程设计' } },
        { path: 'flow/designer', component: () => import('./views/FlowDesigner.vue'), meta: { title: '流程设计器' } },
        { path: 'flow/instances', component: () => import('./views/FlowInstances.vue'), meta: { title: '流程监控' } },
        { path: 'flow/instances/:id', component: () => import('./views/FlowInstance.vue'), meta: { title: '流程跟踪' } },
        { path: 'flow/incidents', component: () => import('./views/FlowIncidents.vue'), meta: { title: '流程异常' } },
        { path: 'notify/inbox', component: () => import('./views/NotifyInbox.vue'), meta: { title: '我的消息' } },
        { path: 'notify/admin', component: () => import('./views/NotifyAdmin.vue'), meta: { title: '消息管理' } },
        { path: 'grid/cases', component: () => import('./views/GridCases.vue'), meta: { title: '事件调度台' } },
        { path: 'grid/admin', component: () => import('./views/GridAdmin.vue'), meta: { title: '网格与规则' } },
        { path: 'grid/people', component: () => import('./views/GridPeople.vue'), meta: { title: '基础信息' } },
      ],
    },
    { path: '/:rest(.*)*', redirect: '/' },
  ],
})

router.beforeEach(async (to) => {
  if (to.meta.public) return true
  if (session.me) return true
  try {
    await loadMe()
    return true
  } catch (e) {
    if (e instanceof ApiError) return { path: '/login', query: { redirect: to.fullPath } }
    throw e
  }
})

setUnauthenticatedHandler(() => {
  session.me = null
  if (router.currentRoute.value.path !== '/login') {
    router.push({ path: '/login', query: { redirect: router.currentRoute.value.fullPath, expired: '1' } })
  }
})
